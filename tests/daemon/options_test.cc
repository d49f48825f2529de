// tpmrmd's command line and configuration file (src/daemon/options.h): the shipped dist/tpmrmd.conf parses,
// shows every option with its default, and options on the command line override the file.
#include "daemon/options.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace tpmrmd::daemon {
namespace {

const std::string kShipped = std::string(TPMRMD_SOURCE_DIR) + "/dist/tpmrmd.conf";
const std::string kNoDefault = "/nonexistent/tpmrmd-test/tpmrmd.conf";

struct Parsed {
  Settings settings;
  std::optional<int> exit;
};

Parsed parse(std::vector<std::string> args, const std::string& default_config = kNoDefault) {
  Parsed p;
  auto app = make_app(p.settings, default_config);
  args.insert(args.begin(), "tpmrmd");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  testing::internal::CaptureStdout();  // --help, and CLI11's error messages
  testing::internal::CaptureStderr();
  p.exit = parse_command_line(*app, static_cast<int>(argv.size()), argv.data());
  testing::internal::GetCapturedStdout();
  testing::internal::GetCapturedStderr();
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/tpmrmd-options-test.XXXXXX";
    int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    path_ = name;
    EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The shipped file with every "# key = value" line uncommented, but for those shown as "" (unset: --policy ""
// would name a file, and --policy excludes --profile).
std::string uncommented_shipped() {
  std::istringstream in(read_file(kShipped));
  const std::regex setting(R"(^# ([a-z][a-z0-9-]*) = (.*)$)");
  std::string out, line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, setting) && m[2].str() != "\"\"") {
      out += m[1].str() + " = " + m[2].str() + "\n";
    } else {
      out += line + "\n";
    }
  }
  return out;
}

TEST(OptionsTest, TheShippedConfigFileParsesAndChangesNothing) {
  auto p = parse({"--config", kShipped});
  ASSERT_FALSE(p.exit) << "exit " << *p.exit;
  const Settings defaults;
  EXPECT_EQ(p.settings.name, defaults.name);
  EXPECT_EQ(p.settings.max_command, defaults.max_command);
  EXPECT_TRUE(p.settings.group.empty());
  EXPECT_FALSE(p.settings.major);
}

TEST(OptionsTest, TheShippedConfigFileUncommentedParsesToTheDefaults) {
  TempFile file(uncommented_shipped());
  auto p = parse({"--config", file.path()});
  ASSERT_FALSE(p.exit) << "every value shown in dist/tpmrmd.conf must be valid:\n" << uncommented_shipped();
  const Settings d;
  const Settings& s = p.settings;
  EXPECT_EQ(s.tpm, d.tpm);
  EXPECT_EQ(s.name, d.name);
  EXPECT_EQ(s.mode, d.mode);
  EXPECT_EQ(s.owner, d.owner);
  EXPECT_EQ(s.group, kDefaultNodeGroup);
  EXPECT_EQ(s.runas, d.runas);
  EXPECT_EQ(s.platform_auth, d.platform_auth);
  EXPECT_EQ(s.provision, d.provision);
  EXPECT_EQ(s.foreground, d.foreground);
  EXPECT_EQ(s.state_dir, d.state_dir);
  EXPECT_EQ(s.lock_dir, d.lock_dir);
  EXPECT_EQ(s.log_level, d.log_level);
  EXPECT_EQ(s.shutdown, d.shutdown);
  EXPECT_EQ(s.swtpm, d.swtpm);
  EXPECT_EQ(s.discard_timeout, d.discard_timeout);
  EXPECT_EQ(s.duration_scale, d.duration_scale);
  EXPECT_EQ(s.max_command, d.max_command);
  EXPECT_EQ(s.rm.max_objects_per_connection, d.rm.max_objects_per_connection);
  EXPECT_EQ(s.rm.max_sessions_per_connection, d.rm.max_sessions_per_connection);
  EXPECT_EQ(s.rm.max_connections, d.rm.max_connections);
  EXPECT_EQ(s.rm.max_connections_per_uid, d.rm.max_connections_per_uid);
  EXPECT_EQ(s.rm.max_objects_per_uid, d.rm.max_objects_per_uid);
  EXPECT_EQ(s.rm.max_sessions_per_uid, d.rm.max_sessions_per_uid);
  EXPECT_EQ(s.rm.root_exempt_from_uid_caps, d.rm.root_exempt_from_uid_caps);
  EXPECT_EQ(s.rm.max_abandoned_sessions, d.rm.max_abandoned_sessions);
  EXPECT_EQ(s.rm.rc_mode, d.rm.rc_mode);
  EXPECT_EQ(s.leftovers, d.leftovers);
  EXPECT_EQ(s.fuse_debug, d.fuse_debug);
  EXPECT_EQ(s.profile, "default");
  // Shown as examples, not defaults: unset unless given.
  EXPECT_EQ(s.major, 240u);
  EXPECT_EQ(s.minor, 0u);
}

TEST(OptionsTest, TheShippedConfigFileShowsEveryOption) {
  Settings s;
  auto app = make_app(s, kNoDefault);
  const std::string text = read_file(kShipped);
  for (const CLI::Option* opt : app->get_options()) {
    if (!opt->get_configurable() || opt->get_lnames().empty()) continue;
    const std::string& name = opt->get_lnames().front();
    if (name == "help" || name == "version") continue;
    EXPECT_NE(text.find("\n# " + name + " = "), std::string::npos) << "dist/tpmrmd.conf lacks " << name;
  }
}

TEST(OptionsTest, CommandLineOverridesTheFile) {
  TempFile file("max-command = 2048\nname = \"tpmrm7\"\ngroup = \"tpmusers\"\nforeground = true\n");
  auto p = parse({"--config", file.path(), "--max-command", "1024", "--group", "other"});
  ASSERT_FALSE(p.exit);
  EXPECT_EQ(p.settings.max_command, 1024u) << "the flag wins";
  EXPECT_EQ(p.settings.group, "other");
  EXPECT_EQ(p.settings.name, "tpmrm7") << "the file applies where no flag is given";
  EXPECT_TRUE(p.settings.foreground);
}

TEST(OptionsTest, TheDefaultFileIsReadWhenItExistsAndSkippedWhenAbsent) {
  TempFile file("name = \"tpmrm9\"\n");
  auto p = parse({}, file.path());
  ASSERT_FALSE(p.exit);
  EXPECT_EQ(p.settings.name, "tpmrm9");
  auto absent = parse({});
  ASSERT_FALSE(absent.exit) << "a missing default is silently skipped";
  EXPECT_EQ(absent.settings.name, "tpmrm0");
}

TEST(OptionsTest, AnExplicitMissingFileIsAConfigurationError) {
  auto p = parse({"--config", "/nonexistent/tpmrmd.conf"});
  ASSERT_TRUE(p.exit);
  EXPECT_EQ(*p.exit, kExitUsage);
}

TEST(OptionsTest, ABadValueInTheFileIsAConfigurationError) {
  TempFile file("mode = \"rw\"\n");
  auto p = parse({"--config", file.path()});
  ASSERT_TRUE(p.exit);
  EXPECT_EQ(*p.exit, kExitUsage);
  TempFile unknown("no-such-option = 1\n");
  auto q = parse({"--config", unknown.path()});
  ASSERT_TRUE(q.exit) << "an unknown key is refused, not ignored";
  EXPECT_EQ(*q.exit, kExitUsage);
}

TEST(OptionsTest, FixedDeviceNumber) {
  auto p = parse({"--major", "240", "--minor", "7"});
  ASSERT_FALSE(p.exit);
  EXPECT_EQ(p.settings.major, 240u);
  EXPECT_EQ(p.settings.minor, 7u);
  auto minor_alone = parse({"--minor", "7"});
  ASSERT_TRUE(minor_alone.exit);
  EXPECT_EQ(*minor_alone.exit, kExitUsage) << "--minor needs --major";
  auto zero = parse({"--major", "0"});
  ASSERT_TRUE(zero.exit);
  EXPECT_EQ(*zero.exit, kExitUsage);
}

TEST(OptionsTest, HelpAndVersionExitZero) {
  EXPECT_EQ(parse({"--help"}).exit, kExitOk);
  EXPECT_EQ(parse({"--version"}).exit, kExitOk);
  EXPECT_EQ(parse({"--no-such-option"}).exit, kExitUsage);
}

}  // namespace
}  // namespace tpmrmd::daemon
