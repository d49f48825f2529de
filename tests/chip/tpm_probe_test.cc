// tools/tpm-probe run as a user would, against a private swtpm. The binary's path comes from meson (TPM_PROBE).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "chip_fixture.h"

namespace tpmrmd::testing {
namespace {

struct Run {
  int exit_code = -1;
  std::string output;
};

// Runs tpm-probe with `args` (already shell-quoted where needed); stderr joins stdout when `merge_stderr`.
Run run_probe(const std::string& args, bool merge_stderr = false) {
  const char* probe = std::getenv("TPM_PROBE");
  EXPECT_NE(probe, nullptr) << "TPM_PROBE is not set (run through meson test)";
  if (!probe) return {};
  std::string command = std::string("'") + probe + "' " + args + (merge_stderr ? " 2>&1" : "");
  Run run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return run;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) run.output.append(buf, n);
  int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

using TpmProbeTest = SwtpmTest;

TEST_F(TpmProbeTest, JsonReportsWhatStartUpLearned) {
  start_swtpm();
  auto run = run_probe("--tpm '" + swtpm_->spec() + "' --json");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto j = nlohmann::json::parse(run.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << run.output;
  EXPECT_EQ(j["manufacturer"], "IBM");
  EXPECT_EQ(j["family"], "2.0");
  EXPECT_EQ(j["hr_transient_min"], 3);
  EXPECT_EQ(j["hr_loaded_min"], 3);
  EXPECT_EQ(j["context_gap_max"], 0xFFFF);
  EXPECT_EQ(j["max_command_size"], 4096);
  EXPECT_GT(j["commands"].get<int>(), 50);
  EXPECT_EQ(j["commands"], j["total_commands"]);
  EXPECT_EQ(j["startup_sent"], false);
}

TEST_F(TpmProbeTest, TextOnAnUninitialisedSwtpmSaysItSentStartup) {
  start_swtpm({.transport = SwtpmOptions::Transport::kTcp, .startup_clear = false});
  auto run = run_probe("--tpm '" + swtpm_->spec() + "'");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("object slots:       3"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("TPM2_Startup(CLEAR) sent"), std::string::npos) << run.output;
}

TEST(TpmProbe, FailuresExitNonZeroWithTheReason) {
  const std::pair<const char*, const char*> cases[] = {
      {"--tpm swtpm:prot=1", "unknown key 'prot'"},
      {"--tpm foo:bar", "unknown backend 'foo'"},
      {"--tpm swtpm:path=/nonexistent/tpm.sock", "/nonexistent/tpm.sock"},
      {"--tpm device:/dev/null", "malformed response"},
      {"", "--tpm is required"},
  };
  for (const auto& [args, message] : cases) {
    auto run = run_probe(args, /*merge_stderr=*/true);
    EXPECT_NE(run.exit_code, 0) << args;
    EXPECT_NE(run.output.find(message), std::string::npos) << args << ": " << run.output;
  }
}

TEST(TpmProbe, HelpNamesTheSpecForms) {
  auto run = run_probe("--help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.output.find("--tpm"), std::string::npos);
  EXPECT_NE(run.output.find("swtpm:path=SOCKET"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("device:/dev/tpmN"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace tpmrmd::testing
