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
#include <map>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "cuse/client_credentials.h"
#include "rm/audit_log.h"

namespace tpmrmd::cuse {

namespace {

// The latest poll handle the kernel gave us for one open file. Shared with the connection's ready callback,
// which may run on the TPM worker thread while the file is being released.
struct PollSlot {
  std::mutex mutex;
  fuse_pollhandle* handle = nullptr;

  bool retired = false;  // the session is being torn down: no handle may be used or kept any more

  void notify() {
    std::lock_guard lock(mutex);
    if (handle) fuse_lowlevel_notify_poll(handle);
  }
  void replace(fuse_pollhandle* next) {
    std::lock_guard lock(mutex);
    if (handle) fuse_pollhandle_destroy(handle);
    handle = retired ? nullptr : next;
    if (retired && next) fuse_pollhandle_destroy(next);
  }
  // Waits out a notification in progress (the mutex) and ends them.
  void retire() {
    std::lock_guard lock(mutex);
    if (handle) fuse_pollhandle_destroy(handle);
    handle = nullptr;
    retired = true;
  }
};

// A blocking write waiting for its command, as the interrupt callback finds it. Guarded by Impl::writes_mutex.
struct PendingWrite {
  std::shared_ptr<device::Connection> connection;
  std::uint64_t ticket = 0;  // Connection::write's, once it returned
  bool interrupted = false;  // the kernel sent FUSE_INTERRUPT for it
  bool answered = false;
};

// The errno an exception that escaped a handler becomes; called from a catch block.
int barrier_errno(const char* handler) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    spdlog::error("event=exception where=\"cuse {}\" error=\"out of memory\"", handler);
    return ENOMEM;
  } catch (const std::exception& e) {
    spdlog::error("event=exception where=\"cuse {}\" error=\"{}\"", handler, rm::log_quoted(e.what()));
  } catch (...) {
    spdlog::error("event=exception where=\"cuse {}\" error=\"non-standard exception\"", handler);
  }
  return EIO;
}

}  // namespace

// An open file as the sweep and the teardown see it.
struct Registered {
  std::weak_ptr<device::Connection> connection;
  std::shared_ptr<PollSlot> poll;
};

struct CuseDevice::OpenFile {
  std::shared_ptr<device::Connection> connection;
  std::shared_ptr<PollSlot> poll = std::make_shared<PollSlot>();
  std::list<Registered>::iterator registry_entry;
};

struct CuseDevice::Impl {
  CuseDeviceOptions options;
  ConnectionOpener opener;
  fuse_session* session = nullptr;
  std::function<void()> on_ready;
  std::atomic<bool> stopping{false};

  // Open connections, for the discard sweep and the teardown.
  std::mutex registry_mutex;
  std::list<Registered> registry;

  // Blocking writes in flight, for the interrupt callback.
  std::mutex writes_mutex;
  std::map<fuse_req_t, std::shared_ptr<PendingWrite>> writes;

  // Requests handed to a callback and not answered yet: the session must outlive them.
  std::mutex answers_mutex;
  std::condition_variable answers_done;
  std::size_t unanswered = 0;
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
      for (auto& entry : registry) {
        if (auto c = entry.connection.lock()) live.push_back(std::move(c));
      }
      lock.unlock();
      auto now = device::Connection::Clock::now();
      for (auto& c : live) {
        if (c->discard_if_expired(now)) {
          spdlog::warn("event=unread-response-discarded conn={} pid={} uid={} comm=\"{}\"", c->id(), c->client().pid,
                       c->client().uid, rm::log_quoted(c->client().comm));
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
        if (::chmod(path.c_str(), options.mode) != 0) {
          spdlog::error("event=node-chmod-failed node={} error=\"{}\"", path, std::strerror(errno));
        }
        if ((options.owner || options.group) &&
            ::chown(path.c_str(), options.owner.value_or(static_cast<uid_t>(-1)),
                    options.group.value_or(static_cast<gid_t>(-1))) != 0) {
          spdlog::error("event=node-chown-failed node={} error=\"{}\"", path, std::strerror(errno));
        }
        spdlog::info("event=node-ready node={} mode=0{:o}", path, options.mode);
        if (on_ready) on_ready();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!stopping.load()) spdlog::error("event=node-missing node={}", path);
  }

  static void init_done(void* userdata) {
    auto* self = static_cast<Impl*>(userdata);
    self->node_setup = std::thread([self] { self->setup_node(); });
  }

  // One request's reply, given exactly once: by the callback it was handed to, by the exception barrier if
  // the handler failed before or while handing it over, or, should the callback be dropped uncalled, as EIO.
  // The session stays up until every Answer has been given (see run()).
  class Answer {
   public:
    Answer(Impl* impl, fuse_req_t req, std::shared_ptr<PendingWrite> write = nullptr)
        : impl_(impl), req_(req), write_(std::move(write)) {
      std::lock_guard lock(impl_->answers_mutex);
      ++impl_->unanswered;
    }
    ~Answer() { error(EIO); }
    Answer(const Answer&) = delete;
    Answer& operator=(const Answer&) = delete;

    void error(int code) {
      if (claim()) finish(fuse_reply_err(req_, code));
    }
    void written(std::size_t n) {
      if (claim()) finish(fuse_reply_write(req_, n));
    }
    void bytes(const Bytes& b) {
      if (claim()) finish(fuse_reply_buf(req_, reinterpret_cast<const char*>(b.data()), b.size()));
    }
    void opened(fuse_file_info* fi) {
      if (claim()) finish(fuse_reply_open(req_, fi));
    }
    void polled(unsigned mask) {
      if (claim()) finish(fuse_reply_poll(req_, mask));
    }

   private:
    bool claim() {
      if (given_.exchange(true)) return false;
      if (write_) {
        // Out of the interrupt callback's reach before the request is freed by the reply.
        std::lock_guard lock(impl_->writes_mutex);
        write_->answered = true;
        auto it = impl_->writes.find(req_);
        if (it != impl_->writes.end() && it->second == write_) impl_->writes.erase(it);
      }
      return true;
    }
    void finish(int) {
      std::lock_guard lock(impl_->answers_mutex);
      if (--impl_->unanswered == 0) impl_->answers_done.notify_all();
    }

    Impl* impl_;
    fuse_req_t req_;
    std::shared_ptr<PendingWrite> write_;
    std::atomic<bool> given_{false};
  };

  // Runs a handler's body; an exception escaping it (std::bad_alloc, say) answers the request with an errno
  // instead of ending the daemon. Only a request nobody answered yet is answered.
  template <typename Body>
  static void guarded(const char* name, const std::shared_ptr<Answer>& answer, Body&& body) noexcept {
    try {
      body();
    } catch (...) {
      const int code = barrier_errno(name);
      if (answer) answer->error(code);
    }
  }

  // libfuse's interrupt callback: the kernel gave up waiting for a write (a signal, SIGKILL included). Runs
  // on a loop thread, possibly inside fuse_req_interrupt_func and under libfuse's request lock, so it answers
  // nothing itself: it asks the connection, whose completion answers the write EINTR.
  static void interrupted(fuse_req_t req, void* data) {
    auto* self = static_cast<Impl*>(data);
    std::shared_ptr<device::Connection> connection;
    std::uint64_t ticket = 0;
    {
      std::lock_guard lock(self->writes_mutex);
      auto it = self->writes.find(req);
      if (it == self->writes.end()) return;
      it->second->interrupted = true;
      connection = it->second->connection;
      ticket = it->second->ticket;
    }
    if (ticket) connection->interrupt(ticket);  // else the handler sees `interrupted` once write() returns
  }

  static void open(fuse_req_t req, fuse_file_info* fi) {
    Impl* self = from(req);
    std::shared_ptr<Answer> answer;
    guarded("open", answer, [&] {
      answer = std::make_shared<Answer>(self, req);
      const rm::ClientInfo client = client_info(req);
      auto connection = self->opener(client);
      if (!connection) return answer->error(connection.error().code);
      auto of = std::make_unique<OpenFile>();
      of->connection = std::move(*connection);
      {
        std::lock_guard lock(self->registry_mutex);
        of->registry_entry = self->registry.insert(self->registry.end(), Registered{of->connection, of->poll});
      }
      of->connection->set_on_ready([slot = of->poll] { slot->notify(); });
      fi->fh = reinterpret_cast<std::uint64_t>(of.release());
      fi->direct_io = 1;
      fi->nonseekable = 1;
      answer->opened(fi);
    });
    if (!answer) fuse_reply_err(req, ENOMEM);  // not even the Answer could be made
  }

  static void read(fuse_req_t req, size_t size, off_t, fuse_file_info* fi) {
    // The offset is ignored: the cursor is ours (CUSE always passes 0; a client offset never indexes anything).
    Impl* self = from(req);
    std::shared_ptr<Answer> answer;
    guarded("read", answer, [&] {
      answer = std::make_shared<Answer>(self, req);
      file(fi)->connection->read(size, (fi->flags & O_NONBLOCK) != 0, [answer](Result<Bytes> r) {
        if (r) {
          answer->bytes(*r);
        } else {
          answer->error(r.error().code);
        }
      });
    });
    if (!answer) fuse_reply_err(req, ENOMEM);
  }

  static void write(fuse_req_t req, const char* buf, size_t size, off_t, fuse_file_info* fi) {
    Impl* self = from(req);
    std::shared_ptr<Answer> answer;
    guarded("write", answer, [&] {
      OpenFile* of = file(fi);
      const bool nonblocking = (fi->flags & O_NONBLOCK) != 0;
      std::shared_ptr<PendingWrite> pending;
      if (!nonblocking) {
        pending = std::make_shared<PendingWrite>();
        pending->connection = of->connection;
      }
      answer = std::make_shared<Answer>(self, req, pending);
      if (pending) {
        {
          std::lock_guard lock(self->writes_mutex);
          self->writes.emplace(req, pending);
        }
        // Before the command is submitted: afterwards its completion may already have freed the request.
        fuse_req_interrupt_func(req, &Impl::interrupted, self);
      }
      ByteSpan data(reinterpret_cast<const std::uint8_t*>(buf), size);
      const std::uint64_t ticket = of->connection->write(data, nonblocking, [answer](Result<std::size_t> r) {
        if (r) {
          answer->written(*r);
        } else {
          answer->error(r.error().code);
        }
      });
      if (!pending || !ticket) return;
      bool interrupted_already = false;
      {
        std::lock_guard lock(self->writes_mutex);
        if (pending->answered) return;
        pending->ticket = ticket;
        interrupted_already = pending->interrupted;
      }
      // The interrupt came while the write was being submitted, before it had a ticket.
      if (interrupted_already) of->connection->interrupt(ticket);
    });
    if (!answer) fuse_reply_err(req, ENOMEM);
  }

  static void poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) {
    Impl* self = from(req);
    std::shared_ptr<Answer> answer;
    guarded("poll", answer, [&] {
      OpenFile* of = file(fi);
      if (ph) of->poll->replace(std::exchange(ph, nullptr));
      answer = std::make_shared<Answer>(self, req);
      answer->polled(static_cast<unsigned>(of->connection->poll()));
    });
    if (ph) fuse_pollhandle_destroy(ph);
    if (!answer) fuse_reply_err(req, ENOMEM);
  }

  static void release(fuse_req_t req, fuse_file_info* fi) {
    Impl* self = from(req);
    std::unique_ptr<OpenFile> of(file(fi));
    // Nothing here allocates; the barrier is for what Connection::close() reaches (the dispatcher's queue).
    try {
      of->connection->close();
    } catch (...) {
      barrier_errno("release");
    }
    {
      std::lock_guard lock(self->registry_mutex);
      self->registry.erase(of->registry_entry);
    }
    of->poll->replace(nullptr);
    of.reset();
    fuse_reply_err(req, 0);
  }

  // After the loop: nothing may use the session once it is freed. Connections still open are closed (their
  // queued commands answered), poll handles retired, and every request answered, before teardown.
  void quiesce() {
    std::vector<Registered> open;
    {
      std::lock_guard lock(registry_mutex);
      open.assign(registry.begin(), registry.end());
    }
    for (auto& entry : open) {
      if (auto c = entry.connection.lock()) {
        try {
          c->close();
        } catch (...) {
          barrier_errno("closing a connection at teardown");
        }
      }
      entry.poll->retire();
    }
    std::unique_lock lock(answers_mutex);
    if (unanswered) spdlog::info("event=teardown-waiting requests_in_flight={}", unanswered);
    answers_done.wait(lock, [this] { return unanswered == 0; });
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
  ci.dev_major = impl_->options.dev_major;
  ci.dev_minor = impl_->options.dev_minor;

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
  // The loop's threads are gone; the sweeper (which notifies pollers) and the node set-up stop next, then
  // completions and notifications on other threads, and only then is the session freed.
  impl_->stopping = true;
  impl_->sweep_wake.notify_all();
  if (impl_->sweeper.joinable()) impl_->sweeper.join();
  if (impl_->node_setup.joinable()) impl_->node_setup.join();
  impl_->quiesce();
  cuse_lowlevel_teardown(impl_->session);
  impl_->session = nullptr;
  if (rc < 0) return make_error(-rc, "CUSE session loop failed");
  return {};
}

void CuseDevice::stop() {
  if (impl_->session) fuse_session_exit(impl_->session);
  ::kill(::getpid(), SIGTERM);  // wakes the loop out of its blocking read of /dev/cuse
}

}  // namespace tpmrmd::cuse
