// The commands socket clients are waiting on, by client process, so that a cancel signal arriving on a
// protocol's side channel (swtpm's CMD_CANCEL_TPM_CMD, mssim's TPM_SIGNAL_CANCEL_ON) reaches the sender's own
// command and nobody else's. A side channel carries no handle of its data connection; the kernel's peer
// credentials are what ties the two together, so cancelling needs a unix socket with a visible pid.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "device/connection.h"

namespace tpmrmd::socket {

class CancelRegistry {
 public:
  // Registered while a blocking write is outstanding; unregisters when destroyed.
  class Entry {
   public:
    Entry() = default;
    Entry(CancelRegistry* registry, std::uint64_t key) : registry_(registry), key_(key) {}
    ~Entry() { if (registry_) registry_->remove(key_); }
    Entry(Entry&& o) noexcept : registry_(std::exchange(o.registry_, nullptr)), key_(o.key_) {}
    Entry& operator=(Entry&&) = delete;
    Entry(const Entry&) = delete;

   private:
    CancelRegistry* registry_ = nullptr;
    std::uint64_t key_ = 0;
  };

  // `ticket` is the one Connection::write returned; pid 0 (unknown) is never registered.
  [[nodiscard]] Entry add(pid_t pid, uid_t uid, std::weak_ptr<device::Connection> connection, std::uint64_t ticket);

  // Interrupts every registered write of process `pid` owned by `uid`; how many.
  std::size_t cancel(pid_t pid, uid_t uid);

 private:
  struct Item {
    pid_t pid;
    uid_t uid;
    std::weak_ptr<device::Connection> connection;
    std::uint64_t ticket;
  };
  void remove(std::uint64_t key);

  std::mutex mutex_;
  std::uint64_t next_ = 0;
  std::map<std::uint64_t, Item> items_;
};

}  // namespace tpmrmd::socket
