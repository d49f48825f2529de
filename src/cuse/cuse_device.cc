#define FUSE_USE_VERSION 31
#include "cuse/cuse_device.h"

#include <cuse_lowlevel.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>

#include "cuse/client_credentials.h"

namespace tpmrmd::cuse {

namespace {

// The latest poll handle the kernel gave us for one open file. Shared with the connection's ready callback,
// which may run on the TPM worker thread while the file is being released.
struct PollSlot {
  std::mutex mutex;
  fuse_pollhandle* handle = nullptr;

  void notify() {
    std::lock_guard lock(mutex);
    if (handle) fuse_lowlevel_notify_poll(handle);
  }
  void replace(fuse_pollhandle* next) {
    std::lock_guard lock(mutex);
    if (handle) fuse_pollhandle_destroy(handle);
    handle = next;
  }
};

}  // namespace

struct CuseDevice::OpenFile {
  std::shared_ptr<device::Connection> connection;
  std::shared_ptr<PollSlot> poll = std::make_shared<PollSlot>();
  std::list<std::weak_ptr<device::Connection>>::iterator registry_entry;
};

struct CuseDevice::Impl {
  CuseDeviceOptions options;
  ConnectionOpener opener;
  fuse_session* session = nullptr;
  std::function<void()> on_ready;
  std::atomic<bool> stopping{false};

  // Open connections, for the discard sweep.
  std::mutex registry_mutex;
  std::list<std::weak_ptr<device::Connection>> registry;
  std::condition_variable sweep_wake;
  std::thread sweeper;
  std::thread node_setup;

  static Impl* from(fuse_req_t req) { return static_cast<Impl*>(fuse_req_userdata(req)); }
  static OpenFile* file(fuse_file_info* fi) { return reinterpret_cast<OpenFile*>(fi->fh); }

  void sweep_loop() {
    std::unique_lock lock(registry_mutex);
    while (!stopping.load()) {
      sweep_wake.wait_for(lock, std::chrono::milliseconds(250));
      std::vector<std::shared_ptr<device::Connection>> live;
      for (auto& weak : registry) {
        if (auto c = weak.lock()) live.push_back(std::move(c));
      }
      lock.unlock();
      auto now = device::Connection::Clock::now();
      for (auto& c : live) {
        if (c->discard_if_expired(now)) {
          spdlog::warn("cuse: discarded an unread response after the timeout (pid {} uid {})", c->client().pid,
                       c->client().uid);
        }
      }
      live.clear();
      lock.lock();
    }
  }

  // The node appears through devtmpfs/udev shortly after CUSE_INIT; then set its mode and owner.
  void setup_node() {
    std::string path = "/dev/" + options.name;
    for (int i = 0; i < 200 && !stopping.load(); ++i) {
      struct stat st{};
      if (::stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode)) {
        if (::chmod(path.c_str(), options.mode) != 0) spdlog::error("cuse: chmod {}: {}", path, std::strerror(errno));
        if ((options.owner || options.group) &&
            ::chown(path.c_str(), options.owner.value_or(static_cast<uid_t>(-1)),
                    options.group.value_or(static_cast<gid_t>(-1))) != 0) {
          spdlog::error("cuse: chown {}: {}", path, std::strerror(errno));
        }
        spdlog::info("cuse: device {} ready (mode {:o})", path, options.mode);
        if (on_ready) on_ready();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!stopping.load()) spdlog::error("cuse: {} did not appear", path);
  }

  static void init_done(void* userdata) {
    auto* self = static_cast<Impl*>(userdata);
    self->node_setup = std::thread([self] { self->setup_node(); });
  }

  static void open(fuse_req_t req, fuse_file_info* fi) {
    Impl* self = from(req);
    const rm::ClientInfo client = client_info(req);
    auto connection = self->opener(client);
    if (!connection) {
      fuse_reply_err(req, connection.error().code);
      return;
    }
    auto* of = new OpenFile;
    of->connection = std::move(*connection);
    of->connection->set_on_ready([slot = of->poll] { slot->notify(); });
    {
      std::lock_guard lock(self->registry_mutex);
      of->registry_entry = self->registry.insert(self->registry.end(), of->connection);
    }
    spdlog::debug("cuse: open by pid {} uid {} gid {} -> connection {}", client.pid, client.uid, client.gid,
                  of->connection->id());
    fi->fh = reinterpret_cast<std::uint64_t>(of);
    fi->direct_io = 1;
    fi->nonseekable = 1;
    fuse_reply_open(req, fi);
  }

  static void read(fuse_req_t req, size_t size, off_t, fuse_file_info* fi) {
    // The offset is ignored: the cursor is ours (CUSE always passes 0; a client offset never indexes anything).
    file(fi)->connection->read(size, (fi->flags & O_NONBLOCK) != 0, [req](Result<Bytes> r) {
      if (r) {
        fuse_reply_buf(req, reinterpret_cast<const char*>(r->data()), r->size());
      } else {
        fuse_reply_err(req, r.error().code);
      }
    });
  }

  static void write(fuse_req_t req, const char* buf, size_t size, off_t, fuse_file_info* fi) {
    ByteSpan data(reinterpret_cast<const std::uint8_t*>(buf), size);
    file(fi)->connection->write(data, (fi->flags & O_NONBLOCK) != 0, [req](Result<std::size_t> r) {
      if (r) {
        fuse_reply_write(req, *r);
      } else {
        fuse_reply_err(req, r.error().code);
      }
    });
  }

  static void poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) {
    OpenFile* of = file(fi);
    if (ph) of->poll->replace(ph);
    fuse_reply_poll(req, static_cast<unsigned>(of->connection->poll()));
  }

  static void release(fuse_req_t req, fuse_file_info* fi) {
    Impl* self = from(req);
    OpenFile* of = file(fi);
    of->connection->close();
    {
      std::lock_guard lock(self->registry_mutex);
      self->registry.erase(of->registry_entry);
    }
    of->poll->replace(nullptr);
    delete of;
    fuse_reply_err(req, 0);
  }
};

CuseDevice::CuseDevice(CuseDeviceOptions options, ConnectionOpener opener) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->opener = std::move(opener);
}

CuseDevice::~CuseDevice() {
  impl_->stopping = true;
  impl_->sweep_wake.notify_all();
  if (impl_->sweeper.joinable()) impl_->sweeper.join();
  if (impl_->node_setup.joinable()) impl_->node_setup.join();
}

Result<void> CuseDevice::check_environment(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos) {
    return make_error(EINVAL, "device name '" + name + "' must be a plain file name");
  }
  if (::access("/dev/cuse", R_OK | W_OK) != 0) {
    int err = errno;
    if (err == ENOENT) {
      return make_error(ENODEV, "/dev/cuse is missing: this kernel has no CUSE; load the 'cuse' kernel module "
                                "(modprobe cuse) or use a kernel with CONFIG_CUSE");
    }
    return make_error(err, std::string("cannot use /dev/cuse: ") + std::strerror(err) + " (tpmrmd needs root or "
                           "access to /dev/cuse)");
  }
  struct stat st{};
  if (::stat(("/dev/" + name).c_str(), &st) == 0) {
    return make_error(EEXIST, "/dev/" + name + " already exists (a kernel TPM resource manager or another "
                              "tpmrmd?); choose another node name with --name");
  }
  return {};
}

Result<void> CuseDevice::run(std::function<void()> on_ready) {
  impl_->on_ready = std::move(on_ready);
  std::string devname = "DEVNAME=" + impl_->options.name;
  const char* dev_info[] = {devname.c_str()};
  cuse_info ci{};
  ci.dev_info_argc = 1;
  ci.dev_info_argv = dev_info;

  cuse_lowlevel_ops ops{};
  ops.init_done = &Impl::init_done;
  ops.open = &Impl::open;
  ops.read = &Impl::read;
  ops.write = &Impl::write;
  ops.poll = &Impl::poll;
  ops.release = &Impl::release;

  // -f: we never let libfuse daemonize; the daemon decides.
  std::vector<std::string> args = {"tpmrmd", "-f"};
  if (impl_->options.debug) args.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int multithreaded = 0;
  impl_->session = cuse_lowlevel_setup(static_cast<int>(argv.size()), argv.data(), &ci, &ops, &multithreaded,
                                       impl_.get());
  if (!impl_->session) return make_error(EIO, "CUSE set-up failed (see the libfuse message above)");
  impl_->sweeper = std::thread([this] { impl_->sweep_loop(); });
  int rc = multithreaded ? fuse_session_loop_mt(impl_->session, 0) : fuse_session_loop(impl_->session);
  impl_->stopping = true;
  impl_->sweep_wake.notify_all();
  cuse_lowlevel_teardown(impl_->session);
  impl_->session = nullptr;
  if (impl_->sweeper.joinable()) impl_->sweeper.join();
  if (impl_->node_setup.joinable()) impl_->node_setup.join();
  if (rc < 0) return make_error(-rc, "CUSE session loop failed");
  return {};
}

void CuseDevice::stop() {
  if (impl_->session) fuse_session_exit(impl_->session);
  ::kill(::getpid(), SIGTERM);  // wakes the loop out of its blocking read of /dev/cuse
}

}  // namespace tpmrmd::cuse
