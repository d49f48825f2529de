#include "rm/dispatcher.h"

#include <future>

namespace tpmrmd::rm {

Result<Bytes> Dispatcher::execute(ConnectionId id, Bytes command) {
  std::promise<Result<Bytes>> promise;
  auto future = promise.get_future();
  submit(id, std::move(command), [&promise](Result<Bytes> result) { promise.set_value(std::move(result)); });
  return future.get();
}

}  // namespace tpmrmd::rm
