#include "socket/command_runner.h"

#include <tss2/tss2_tpm2_types.h>

#include <condition_variable>
#include <mutex>
#include <optional>

#include "rm/handles.h"
#include "tpm/header.h"

namespace tpmrmd::socket {
namespace {

// Larger than any TPM response; read() takes what is stored.
constexpr std::size_t kReadMax = 1 << 20;

template <typename T>
struct Waiter {
  std::mutex mutex;
  std::condition_variable done;
  std::optional<Result<T>> result;

  void set(Result<T> r) {
    std::lock_guard lock(mutex);
    result.emplace(std::move(r));
    done.notify_all();
  }
  Result<T> wait() {
    std::unique_lock lock(mutex);
    done.wait(lock, [this] { return result.has_value(); });
    return std::move(*result);
  }
};

}  // namespace

Result<Bytes> run_command(const std::shared_ptr<device::Connection>& connection, ByteSpan command,
                          CancelRegistry* registry, pid_t pid, uid_t uid) {
  auto written = std::make_shared<Waiter<std::size_t>>();
  const std::uint64_t ticket =
      connection->write(command, /*nonblocking=*/false, [written](Result<std::size_t> r) { written->set(std::move(r)); });
  {
    CancelRegistry::Entry entry = registry ? registry->add(pid, uid, connection, ticket) : CancelRegistry::Entry();
    if (auto w = written->wait(); !w) return w.error();
  }
  auto response = std::make_shared<Waiter<Bytes>>();
  connection->read(kReadMax, /*nonblocking=*/false, [response](Result<Bytes> r) { response->set(std::move(r)); });
  return response->wait();
}

std::optional<Bytes> errno_response(int error) {
  switch (error) {
    case ENODEV:
      return std::nullopt;
    case EBUSY:
      return tpm::make_rc_response(rm::kRmLayer | TPM2_RC_RETRY);
    case EINTR:
    case ECANCELED:
      return tpm::make_rc_response(TPM2_RC_CANCELED);
    case EINVAL:
    case E2BIG:
      return tpm::make_rc_response(rm::kRmLayer | TPM2_RC_COMMAND_SIZE);
    case EPERM:
    case EACCES:
      return tpm::make_rc_response(rm::kRmLayer | TPM2_RC_COMMAND_CODE);
    case ENOSPC:
    case ENOMEM:
    case EMFILE:
    case EAGAIN:
      return tpm::make_rc_response(rm::kRmLayer | TPM2_RC_MEMORY);
    default:
      return tpm::make_rc_response(rm::kRmLayer | TPM2_RC_FAILURE);
  }
}

}  // namespace tpmrmd::socket
