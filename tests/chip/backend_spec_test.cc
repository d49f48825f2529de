// Backend spec strings: every bad part is named in the error.
#include <gtest/gtest.h>

#include "chip/backend_spec.h"
#include "chip/driver_factory.h"

namespace tpmrmd::chip {
namespace {

struct BadSpec {
  const char* spec;
  int code;
  const char* message_part;
};

TEST(BackendSpec, BadSpecsNameTheBadPart) {
  const BadSpec cases[] = {
      {"", EINVAL, "empty backend spec"},
      {":x", EINVAL, "missing backend kind"},
      {"foo:x", EINVAL, "unknown backend 'foo'"},
      {"swtpm:prot=1", EINVAL, "unknown key 'prot'"},
      {"swtpm:port=99999", ERANGE, "port '99999' out of range"},
      {"swtpm:port=0", ERANGE, "port '0' out of range"},
      {"swtpm:port=12ab", EINVAL, "port '12ab' is not a number"},
      {"swtpm:port", EINVAL, "expected key=value, got 'port'"},
      {"swtpm:port=", EINVAL, "expected key=value"},
      {"swtpm:port=1,port=2", EINVAL, "key 'port' given twice"},
      {"swtpm:path=/x,port=3", EINVAL, "'path' excludes 'host' and 'port'"},
      {"swtpm:path=/nonexistent/tpmrmd.sock", ENOENT, "/nonexistent/tpmrmd.sock"},
      {"device:/nonexistent/tpm0", ENOENT, "/nonexistent/tpm0"},
      {"device:/etc/hostname", ENOTTY, "not a character device"},
  };
  for (const auto& c : cases) {
    auto d = make_driver(c.spec);
    ASSERT_FALSE(d.ok()) << c.spec;
    EXPECT_EQ(d.error().code, c.code) << c.spec << ": " << describe(d.error());
    EXPECT_NE(d.error().message.find(c.message_part), std::string::npos) << c.spec << ": " << d.error().message;
  }
}

TEST(BackendSpec, KeyValuesAndNumbers) {
  auto spec = split_backend_spec("swtpm:host=::1,port=0x10");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->kind, "swtpm");
  auto kv = parse_key_values(*spec, {"host", "port"});
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->at("host"), "::1");
  auto port = parse_number(*spec, "port", kv->at("port"), 65535);
  ASSERT_TRUE(port.ok());
  EXPECT_EQ(*port, 16u);
}

TEST(BackendSpec, HelpListsEveryKind) {
  auto help = backend_spec_help();
  EXPECT_NE(help.find("swtpm:host="), std::string::npos);
  EXPECT_NE(help.find("device:/dev/tpmN"), std::string::npos);
}

}  // namespace
}  // namespace tpmrmd::chip
