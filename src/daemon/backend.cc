#include "daemon/backend.h"

#include <spdlog/spdlog.h>

#include "daemon/capturing_port.h"
#include "daemon/chip_port.h"
#include "rm/worker_dispatcher.h"

namespace tpmrmd::daemon {

Result<std::shared_ptr<Backend>> Backend::start(std::unique_ptr<chip::Driver> driver, rm::RmOptions rm_options,
                                                chip::ChipOptions chip_options, const Provision& provision,
                                                std::shared_ptr<PcapngWriter> capture) {
  std::shared_ptr<Backend> backend(new Backend);
  backend->description_ = driver->description();
  backend->identity_ = driver->identity();
  // The RM keeps its tables in step with every response, so a late one is worth more to it than ETIME.
  chip_options.return_late_responses = true;
  backend->chip_ = std::make_unique<chip::Chip>(std::move(driver), chip_options);
  auto started = backend->chip_->startup();
  if (!started) return started.error();
  if (provision) {
    if (auto r = provision(*backend->chip_); !r) return r.error();
  }
  backend->port_ = std::make_unique<ChipPort>(*backend->chip_);
  if (capture) backend->port_ = std::make_unique<CapturingTpmPort>(std::move(backend->port_), capture);
  backend->worker_ = std::make_unique<rm::WorkerDispatcher>(*backend->port_, rm_options);
  if (capture) backend->capturing_ = std::make_unique<CapturingDispatcher>(*backend->worker_, std::move(capture));
  return backend;
}

Backend::~Backend() { stop(chip::ShutdownMode::kNone); }

bool Backend::gone() const { return closed_.load(std::memory_order_acquire) || !chip_->registered(); }

Result<std::shared_ptr<device::Connection>> Backend::open(const rm::ClientInfo& client,
                                                        device::ConnectionOptions options) {
  if (gone()) return make_error(ENODEV, "TPM backend is gone");
  // The connection owns this backend through both pointers: its dispatcher is our worker, its gate is us.
  auto self = shared_from_this();
  std::shared_ptr<rm::Dispatcher> dispatcher(self, capturing_ ? capturing_.get() : worker_.get());
  auto connection = device::Connection::open(std::move(dispatcher), client, options, self);
  if (!connection) return connection;
  std::lock_guard lock(mutex_);
  std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
  connections_.push_back(*connection);
  return connection;
}

void Backend::stop(chip::ShutdownMode mode) {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  std::vector<std::weak_ptr<device::Connection>> connections;
  {
    std::lock_guard lock(mutex_);
    connections.swap(connections_);
  }
  for (auto& weak : connections) {
    if (auto c = weak.lock()) c->notify_backend_gone();
  }
  // Flushes what the clients held while the chip is still registered (a no-op when the transport is gone).
  if (worker_) worker_->stop();
  if (chip_) chip_->unregister(mode);
}

rm::Counters Backend::counters() { return worker_ ? worker_->counters() : rm::Counters{}; }
std::optional<rm::Snapshot> Backend::snapshot(std::chrono::milliseconds within) {
  return worker_ ? worker_->snapshot(within) : rm::Snapshot{};
}
std::size_t Backend::flush_abandoned() { return worker_ ? worker_->flush_abandoned() : 0; }

std::optional<rm::Counters> Backend::counters(std::chrono::milliseconds within) {
  return worker_ ? worker_->counters(within) : rm::Counters{};
}

}  // namespace tpmrmd::daemon
