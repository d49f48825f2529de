// cuse_floor: a CUSE character device that does no TPM work at all. Every write is taken as a command and the
// next read on that open file answers it with the same canned success response (GetRandom-shaped, 16 bytes).
// Through it a client sees only what a CUSE resource manager cannot avoid: two FUSE round trips per command (the
// write, then the read) and the kernel's CUSE path. tools/vm-bench.sh measures it as the floor under tpmrmd.
//
//   cuse_floor --name tpmfloor0 [--single-thread]      (runs until SIGTERM/SIGINT; needs /dev/cuse)
#define FUSE_USE_VERSION 31

#include <cuse_lowlevel.h>
#include <fuse_lowlevel.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace {

// tag TPM2_ST_NO_SESSIONS, size 28, TPM2_RC_SUCCESS, then a TPM2B of 16 bytes.
constexpr std::uint8_t kResponse[] = {0x80, 0x01, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
                                      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
                                      0x0d, 0x0e, 0x0f, 0x10};

// Per open file: whether a command awaits its response. Atomic because a multithreaded session may serve a
// file's write and its following read on different threads.
struct OpenFile {
  std::atomic<bool> pending{false};
};

OpenFile* file_of(const fuse_file_info* fi) { return reinterpret_cast<OpenFile*>(fi->fh); }

void on_open(fuse_req_t req, fuse_file_info* fi) {
  fi->fh = reinterpret_cast<std::uint64_t>(new OpenFile);
  // Reads and writes reach us as they are, not through the page cache, as on a TPM node.
  fi->direct_io = 1;
  fi->nonseekable = 1;
  if (fuse_reply_open(req, fi) != 0) delete file_of(fi);
}

void on_release(fuse_req_t req, fuse_file_info* fi) {
  delete file_of(fi);
  fuse_reply_err(req, 0);
}

void on_write(fuse_req_t req, const char*, std::size_t size, off_t, fuse_file_info* fi) {
  file_of(fi)->pending = true;
  fuse_reply_write(req, size);
}

// A read without a command before it has nothing to answer, as on a TPM node without a pending response.
void on_read(fuse_req_t req, std::size_t size, off_t, fuse_file_info* fi) {
  if (!file_of(fi)->pending.exchange(false)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  if (size < sizeof kResponse) {
    fuse_reply_err(req, ENOSPC);
    return;
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(kResponse), sizeof kResponse);
}

struct SessionDeleter {
  void operator()(fuse_session* s) const { cuse_lowlevel_teardown(s); }
};

}  // namespace

int main(int argc, char** argv) {
  std::string name = "tpmfloor0";
  bool single_thread = false;
  CLI::App app{"A CUSE device answering every command at once: the cost of the CUSE path alone"};
  app.add_option("--name", name, "the node's name under /dev")->capture_default_str();
  app.add_flag("--single-thread", single_thread, "one session thread instead of libfuse's worker pool");
  CLI11_PARSE(app, argc, argv);

  std::string devname = "DEVNAME=" + name;
  const char* dev_info[] = {devname.c_str()};
  cuse_info ci{};
  ci.dev_info_argc = 1;
  ci.dev_info_argv = dev_info;

  cuse_lowlevel_ops ops{};
  ops.open = on_open;
  ops.release = on_release;
  ops.read = on_read;
  ops.write = on_write;

  // libfuse's own options: foreground, and its single-threaded loop on request.
  std::vector<std::string> args = {argv[0], "-f"};
  if (single_thread) args.push_back("-s");
  std::vector<char*> fuse_argv;
  for (std::string& a : args) fuse_argv.push_back(a.data());
  int multithreaded = 0;
  std::unique_ptr<fuse_session, SessionDeleter> session(cuse_lowlevel_setup(
      static_cast<int>(fuse_argv.size()), fuse_argv.data(), &ci, &ops, &multithreaded, nullptr));
  if (!session) {
    std::fprintf(stderr, "cuse_floor: cannot set up the CUSE session (is /dev/cuse there?)\n");
    return 1;
  }
  const int rc = multithreaded ? fuse_session_loop_mt(session.get(), 0) : fuse_session_loop(session.get());
  return rc == 0 ? 0 : 1;
}
