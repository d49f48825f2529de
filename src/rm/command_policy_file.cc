#include "rm/command_policy_file.h"

#include <fmt/format.h>
#include <grp.h>

#include <cerrno>
#include <cstring>
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "tpm/cc_names.h"

namespace tpmrmd::rm {
namespace {

using nlohmann::json;

Error bad(std::string_view source, std::string_view where, const std::string& what) {
  return make_error(EINVAL, fmt::format("{}: {}: {}", source, where, what));
}

Result<TPM2_CC> command_entry(const json& entry, std::string_view source, const std::string& where) {
  if (entry.is_number_unsigned()) {
    const auto n = entry.get<std::uint64_t>();
    if (n > 0xFFFFFFFFu) return bad(source, where, fmt::format("command code {} does not fit 32 bits", n));
    return static_cast<TPM2_CC>(n);
  }
  if (entry.is_string()) {
    const auto& text = entry.get_ref<const std::string&>();
    if (auto code = parse_command_code(text)) return *code;
    return bad(source, where, fmt::format("unknown command '{}' (a TPM2_CC name such as \"Clear\", or a number)", text));
  }
  return bad(source, where, fmt::format("a command is a name or a number, not {}", entry.type_name()));
}

Result<std::vector<TPM2_CC>> command_list(const json& list, std::string_view source, const std::string& where) {
  if (!list.is_array()) return bad(source, where, fmt::format("expected a list of commands, not {}", list.type_name()));
  std::vector<TPM2_CC> codes;
  for (std::size_t i = 0; i < list.size(); ++i) {
    auto code = command_entry(list[i], source, fmt::format("{}[{}]", where, i));
    if (!code) return code.error();
    codes.push_back(*code);
  }
  return codes;
}

Result<void> apply_class(const json& spec, ClassRules& rules, std::string_view source, const std::string& where) {
  if (!spec.is_object()) return bad(source, where, fmt::format("expected an object, not {}", spec.type_name()));
  for (const auto& [key, value] : spec.items()) {
    if (key != "allow" && key != "deny") {
      return bad(source, where, fmt::format("unknown key '{}' (a class has \"allow\" and \"deny\")", key));
    }
  }
  if (auto allow = spec.find("allow"); allow != spec.end()) {
    if (allow->is_string() && allow->get_ref<const std::string&>() == "all") {
      rules.allow_all = true;
      rules.allow.clear();
      rules.deny.clear();
    } else {
      auto codes = command_list(*allow, source, where + ".allow");
      if (!codes) return codes.error();
      for (TPM2_CC c : *codes) {
        rules.deny.erase(c);
        if (!rules.allow_all) rules.allow.insert(c);
      }
    }
  }
  if (auto deny = spec.find("deny"); deny != spec.end()) {
    auto codes = command_list(*deny, source, where + ".deny");
    if (!codes) return codes.error();
    rules.deny.insert(codes->begin(), codes->end());
  }
  return {};
}

}  // namespace

std::optional<gid_t> resolve_group(std::string_view name) {
  const std::string n(name);
  struct group gr {};
  struct group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(n.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found) return found->gr_gid;
  gid_t gid = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), gid);
  if (!name.empty() && ec == std::errc() && end == name.data() + name.size()) return gid;
  return std::nullopt;
}

std::optional<TPM2_CC> parse_command_code(std::string_view text) {
  if (auto code = tpm::cc_from_name(text)) return code;
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
    base = 16;
  }
  TPM2_CC code = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), code, base);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return code;
}

Result<CommandPolicy> parse_command_policy(std::string_view text, std::string_view source,
                                           const GroupResolver& groups) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line L, column C: ..."; the id is noise.
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what.erase(0, pos + 2);
    return make_error(EINVAL, fmt::format("{}: not valid JSON: {}", source, what));
  }
  if (!doc.is_object()) return bad(source, "top level", fmt::format("expected an object, not {}", doc.type_name()));
  for (const auto& [key, value] : doc.items()) {
    if (key != "profile" && key != "group" && key != "classes") {
      return bad(source, "top level",
                 fmt::format("unknown key '{}' (expected \"profile\", \"group\", \"classes\")", key));
    }
  }

  PolicyProfile profile = PolicyProfile::kDefault;
  if (auto p = doc.find("profile"); p != doc.end()) {
    auto parsed = p->is_string() ? policy_profile_from_name(p->get_ref<const std::string&>()) : std::nullopt;
    if (!parsed) return bad(source, "profile", fmt::format("expected \"default\" or \"strict\", not {}", p->dump()));
    profile = *parsed;
  }
  CommandPolicy policy = CommandPolicy::from_profile(profile);

  if (auto g = doc.find("group"); g != doc.end()) {
    std::string name;
    if (g->is_string()) {
      name = g->get<std::string>();
    } else if (g->is_number_unsigned()) {
      name = std::to_string(g->get<std::uint64_t>());
    } else {
      return bad(source, "group", fmt::format("expected a group name or gid, not {}", g->dump()));
    }
    auto gid = groups(name);
    if (!gid) return bad(source, "group", fmt::format("unknown group '{}'", name));
    policy.set_group(*gid, name);
  }

  if (auto classes = doc.find("classes"); classes != doc.end()) {
    if (!classes->is_object()) {
      return bad(source, "classes", fmt::format("expected an object, not {}", classes->type_name()));
    }
    for (const auto& [key, spec] : classes->items()) {
      std::optional<CallerClass> c;
      for (CallerClass k : {CallerClass::kRoot, CallerClass::kGroup, CallerClass::kOther}) {
        if (key == caller_class_name(k)) c = k;
      }
      if (!c) {
        return bad(source, "classes",
                   fmt::format("unknown class '{}' (expected \"root\", \"group\", \"other\")", key));
      }
      if (auto applied = apply_class(spec, policy.rules(*c), source, "classes." + key); !applied) {
        return applied.error();
      }
    }
  }
  return policy;
}

Result<CommandPolicy> load_command_policy(const std::string& path, const GroupResolver& groups) {
  std::ifstream in(path);
  if (!in) return make_error(errno ? errno : ENOENT, fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(EIO, fmt::format("{}: read failed", path));
  return parse_command_policy(text.str(), path, groups);
}

}  // namespace tpmrmd::rm
