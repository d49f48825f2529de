#include "rm/dispatcher.h"

#include <algorithm>
#include <future>

namespace tpmrmd::rm {

bool ClientInfo::in_group(gid_t group) const {
  return gid == group || std::find(groups.begin(), groups.end(), group) != groups.end();
}

Result<Bytes> Dispatcher::execute(ConnectionId id, Bytes command) {
  std::promise<Result<Bytes>> promise;
  auto future = promise.get_future();
  submit(id, std::move(command), [&promise](Result<Bytes> result) { promise.set_value(std::move(result)); });
  return future.get();
}

}  // namespace tpmrmd::rm
