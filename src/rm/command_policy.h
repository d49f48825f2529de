// Which command codes each class of caller may run, decided before the TPM sees anything.
//
// Three caller classes: root (uid 0), members of one named group (primary or supplementary), everyone else.
// Each class has its own rules: either every command the TPM accepts except a deny list, or an allow list
// (minus the deny list). Two built-in profiles: `default` allows everything to everyone, as the kernel's
// /dev/tpmrm0 does; `strict` gives root everything and every other caller an explicit allow list of the
// specification's commands without the ones that change the TPM for everybody (privileged_commands()), and
// so without unknown and vendor codes, like Windows TBS. A policy file (command_policy_file.h) starts from
// a profile and edits the classes.
#pragma once

#include <sys/types.h>
#include <tss2/tss2_tpm2_types.h>

#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

#include "rm/dispatcher.h"

namespace tpmrmd::rm {

enum class CallerClass { kRoot, kGroup, kOther };
std::string_view caller_class_name(CallerClass c);  // "root", "group", "other"

enum class PolicyProfile { kDefault, kStrict };
std::optional<PolicyProfile> policy_profile_from_name(std::string_view name);  // "default", "strict"
std::string_view policy_profile_name(PolicyProfile p);

// One class's rules. A deny entry wins over an allow entry.
struct ClassRules {
  bool allow_all = true;     // every command code, except `deny`
  std::set<TPM2_CC> allow;   // without allow_all: only these
  std::set<TPM2_CC> deny;

  bool allows(TPM2_CC code) const;
  bool operator==(const ClassRules&) const = default;
};

struct PolicyDecision {
  bool allowed = true;
  CallerClass caller = CallerClass::kOther;
};

class CommandPolicy {
 public:
  // `default`, unless a profile or a file says otherwise.
  CommandPolicy() = default;
  static CommandPolicy from_profile(PolicyProfile profile);

  CallerClass classify(const ClientInfo& client) const;
  PolicyDecision decide(const ClientInfo& client, TPM2_CC code) const;
  bool allows(const ClientInfo& client, TPM2_CC code) const { return decide(client, code).allowed; }

  ClassRules& rules(CallerClass c);
  const ClassRules& rules(CallerClass c) const;

  // The group class; without one, nobody is in it.
  void set_group(gid_t gid, std::string name);
  std::optional<gid_t> group() const { return group_; }
  const std::string& group_name() const { return group_name_; }

  // Whether every class may run everything (the kernel's behaviour): the RM then need not look.
  bool permits_everything() const;
  // For the start-up log line: "profile=strict group=tss(gid 123) root=all group-class=allow:99 other=allow:99".
  std::string describe() const;
  PolicyProfile profile() const { return profile_; }

 private:
  PolicyProfile profile_ = PolicyProfile::kDefault;
  ClassRules root_, group_rules_, other_;
  std::optional<gid_t> group_;
  std::string group_name_;
};

// The commands strict refuses to non-root callers: they change the TPM for every user (hierarchies, seeds,
// lockout, clock, PCR banks, firmware, audit). Whoever runs one is written to the audit trail.
std::span<const TPM2_CC> privileged_commands();
bool is_privileged(TPM2_CC code);
// strict's allow list for non-root callers: the specification's commands except the privileged ones.
std::span<const TPM2_CC> strict_allowed_commands();

}  // namespace tpmrmd::rm
