// The two places a --capture sees traffic, as decorators of the interfaces the layers already meet at, so that
// nothing below the daemon knows about capturing:
//   CapturingTpmPort   around the RM's TpmPort: what reaches the TPM (physical handles, the RM's own
//                      ContextSave/Load/FlushContext included), on the worker thread;
//   CapturingDispatcher around the RM's Dispatcher: what a connection sent and got back (virtual handles), as
//                      the device's Connection submits it (front-end threads) and is completed (worker thread).
// Errors (ENODEV, ECANCELED, ...) carry no bytes and are not recorded.
#pragma once

#include <memory>
#include <utility>

#include "daemon/pcapng_writer.h"
#include "rm/dispatcher.h"
#include "rm/tpm_port.h"

namespace tpmrmd::daemon {

class CapturingTpmPort final : public rm::TpmPort {
 public:
  CapturingTpmPort(std::unique_ptr<rm::TpmPort> inner, std::shared_ptr<PcapngWriter> capture)
      : inner_(std::move(inner)), capture_(std::move(capture)) {}
  const tpm::TpmInfo& info() const override { return inner_->info(); }
  bool available() const override { return inner_->available(); }
  Result<Bytes> transmit(ByteSpan command) override {
    capture_->command(PcapngWriter::kTpmFlow, command);
    auto response = inner_->transmit(command);
    if (response) capture_->response(PcapngWriter::kTpmFlow, *response);
    return response;
  }

 private:
  std::unique_ptr<rm::TpmPort> inner_;
  std::shared_ptr<PcapngWriter> capture_;
};

class CapturingDispatcher final : public rm::Dispatcher {
 public:
  // `inner` must outlive this object.
  CapturingDispatcher(rm::Dispatcher& inner, std::shared_ptr<PcapngWriter> capture)
      : inner_(inner), capture_(std::move(capture)) {}

  Result<rm::ConnectionId> open(const rm::ClientInfo& client) override { return inner_.open(client); }
  void submit(rm::ConnectionId id, Bytes command, Completion completion) override {
    capture_->command(id, command);
    inner_.submit(id, std::move(command), recording(id, std::move(completion)));
  }
  void submit_blocking(rm::ConnectionId id, Bytes command, Completion completion) override {
    capture_->command(id, command);
    inner_.submit_blocking(id, std::move(command), recording(id, std::move(completion)));
  }
  void close(rm::ConnectionId id) override {
    inner_.close(id);
    capture_->forget(id);
  }
  void cancel(rm::ConnectionId id) override { inner_.cancel(id); }
  rm::Counters counters() override { return inner_.counters(); }

 private:
  Completion recording(rm::ConnectionId id, Completion completion) const {
    return [capture = capture_, id, completion = std::move(completion)](Result<Bytes> response) {
      if (response) capture->response(id, *response);
      completion(std::move(response));
    };
  }

  rm::Dispatcher& inner_;
  std::shared_ptr<PcapngWriter> capture_;
};

}  // namespace tpmrmd::daemon
