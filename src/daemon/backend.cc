#include "daemon/backend.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "daemon/chip_port.h"
#include "rm/tpm_port.h"
#include "rm/worker_dispatcher.h"

namespace tpmrmd::daemon {

// The Dispatcher connections hold. It outlives the worker it forwards to: once the backend ends, the worker is
// destroyed (on the supervisor thread, never on a connection's or the worker's own thread) and every later call
// fails with ENODEV without touching it.
class GatedDispatcher final : public rm::Dispatcher {
 public:
  explicit GatedDispatcher(std::unique_ptr<rm::WorkerDispatcher> inner) : inner_(std::move(inner)) {}

  Result<rm::ConnectionId> open(const rm::ClientInfo& client) override {
    auto inner = get();
    if (!inner) return make_error(ENODEV, "TPM backend is gone");
    return inner->open(client);
  }
  void submit(rm::ConnectionId id, Bytes command, Completion completion) override {
    if (auto inner = get()) return inner->submit(id, std::move(command), std::move(completion));
    completion(make_error(ENODEV, "TPM backend is gone"));
  }
  void close(rm::ConnectionId id) override {
    if (auto inner = get()) inner->close(id);
  }
  rm::Counters counters() override {
    auto inner = get();
    return inner ? inner->counters() : rm::Counters{};
  }
  // Detaches the worker and destroys it here, once no call is using it. No lock is held across calls into the
  // worker (its completions close connections, which call back into close()), and the last reference is
  // always this thread's, so the worker is never joined from itself.
  void retire() {
    std::shared_ptr<rm::WorkerDispatcher> inner;
    {
      std::lock_guard lock(mutex_);
      inner = std::move(inner_);
    }
    while (inner && inner.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    inner.reset();
  }

 private:
  std::shared_ptr<rm::WorkerDispatcher> get() {
    std::lock_guard lock(mutex_);
    return inner_;
  }

  std::mutex mutex_;
  std::shared_ptr<rm::WorkerDispatcher> inner_;
};

Result<std::shared_ptr<Backend>> Backend::start(std::unique_ptr<chip::Driver> driver, rm::RmOptions rm_options,
                                                std::function<void(const Error&)> on_lost,
                                                chip::ChipOptions chip_options) {
  std::shared_ptr<Backend> backend(new Backend);
  backend->description_ = driver->description();
  backend->identity_ = driver->identity();
  backend->chip_ = std::make_unique<chip::Chip>(std::move(driver), chip_options);
  // Late fds must see ENODEV from the moment the transport broke, including the command that found out, so
  // connections are marked on the noticing thread; the rest of the teardown is the caller's (another thread).
  backend->chip_->set_on_lost([weak = std::weak_ptr<Backend>(backend), on_lost = std::move(on_lost)](const Error& e) {
    {
      auto self = weak.lock();  // released before on_lost hands the backend to its owner for destruction
      if (self) self->mark_connections_lost();
    }
    if (on_lost) on_lost(e);
  });
  auto started = backend->chip_->startup();
  if (!started) return started.error();
  backend->port_ = std::make_unique<ChipPort>(*backend->chip_);
  backend->dispatcher_ =
      std::make_shared<GatedDispatcher>(std::make_unique<rm::WorkerDispatcher>(*backend->port_, rm_options));
  return backend;
}

Backend::~Backend() { stop(chip::ShutdownMode::kNone); }

Result<std::shared_ptr<device::Connection>> Backend::open(const rm::ClientInfo& client,
                                                        device::ConnectionOptions options) {
  std::lock_guard lock(mutex_);
  if (stopped_) return make_error(ENODEV, "TPM backend is gone");
  auto connection = device::Connection::open(dispatcher_, client, options);
  if (!connection) return connection;
  std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
  connections_.push_back(*connection);
  return connection;
}

void Backend::stop(chip::ShutdownMode mode) {
  std::vector<std::weak_ptr<device::Connection>> connections;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    connections.swap(connections_);
  }
  for (auto& weak : connections) {
    if (auto c = weak.lock()) c->mark_backend_lost();
  }
  // The worker's destructor cancels queued commands and closes every RM connection, flushing what the clients
  // held while the chip is still registered (a no-op when the transport is already gone).
  if (dispatcher_) dispatcher_->retire();
  if (chip_) chip_->unregister(mode);
}

void Backend::mark_connections_lost() {
  std::vector<std::shared_ptr<device::Connection>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto& weak : connections_) {
      if (auto c = weak.lock()) live.push_back(std::move(c));
    }
  }
  for (auto& c : live) c->mark_backend_lost();
}

bool Backend::stopped() const {
  std::lock_guard lock(mutex_);
  return stopped_;
}

rm::Counters Backend::counters() { return dispatcher_ ? dispatcher_->counters() : rm::Counters{}; }

}  // namespace tpmrmd::daemon
