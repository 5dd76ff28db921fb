#include "server/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/temp_files.h"

namespace itkit::server {
namespace {

namespace fs = std::filesystem;

Result<CommandLine> Parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"itkit_server"};
  for (auto& a : args) argv.push_back(a.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST(Config, DefaultsMatchTheOriginalServer) {
  auto cl = Parse({});
  ASSERT_TRUE(cl.ok());
  EXPECT_EQ(cl->config.host, "127.0.0.1");
  EXPECT_EQ(cl->config.port, 8000);
  EXPECT_FALSE(cl->config.debug);
  EXPECT_EQ(cl->config.cors_origins, (std::vector<std::string>{"*"}));
}

TEST(Config, CommandLine) {
  auto cl = Parse({"--host", "0.0.0.0", "--port=8001", "--debug", "--model-dir", "/m", "--model-root", "/a",
                   "--model-root=/b", "--queue", "3", "--request-timeout", "2.5", "--cors-origin", "http://x"});
  ASSERT_TRUE(cl.ok()) << cl.status().message();
  EXPECT_EQ(cl->config.host, "0.0.0.0");
  EXPECT_EQ(cl->config.port, 8001);
  EXPECT_TRUE(cl->config.debug);
  EXPECT_EQ(cl->config.model_dir, "/m");
  EXPECT_EQ(cl->config.model_roots, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(cl->config.queue, 3);
  EXPECT_DOUBLE_EQ(cl->config.request_timeout, 2.5);
  EXPECT_EQ(cl->config.cors_origins, (std::vector<std::string>{"http://x"}));
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"--version"})->version);
  for (auto bad : std::vector<std::vector<std::string>>{{"--port", "0"}, {"--port", "99999"}, {"--port", "x"},
                                                        {"--port"}, {"--nope"}, {"stray"}, {"--queue", "-1"},
                                                        {"--request-timeout", "0"}, {"--debug=maybe"},
                                                        {"--config", "/nonexistent/server.yaml"}}) {
    EXPECT_FALSE(Parse(bad).ok()) << bad[0];
  }
}

TEST(Config, YamlFileAndPrecedence) {
  fs::path dir = fs::temp_directory_path() / ("itkit-config-" + RandomHex(4));
  fs::create_directories(dir);
  std::ofstream(dir / "server.yaml") << "host: 0.0.0.0\nport: 9000\nqueue: 5\nmodel_roots: [/x, /y]\n"
                                        "cors_origins: []\ndebug: true\n";
  auto cl = Parse({"--config", (dir / "server.yaml").string(), "--port", "9001"});
  ASSERT_TRUE(cl.ok()) << cl.status().message();
  EXPECT_EQ(cl->config.host, "0.0.0.0");
  EXPECT_EQ(cl->config.port, 9001);  // the command line wins
  EXPECT_EQ(cl->config.queue, 5);
  EXPECT_TRUE(cl->config.debug);
  EXPECT_EQ(cl->config.model_roots, (std::vector<std::string>{"/x", "/y"}));
  EXPECT_TRUE(cl->config.cors_origins.empty());

  ServerConfig c;
  EXPECT_FALSE(ApplyYamlText("port: [1, 2]", "t", &c).ok());
  EXPECT_FALSE(ApplyYamlText("prot: 1", "t", &c).ok());
  EXPECT_FALSE(ApplyYamlText("- a\n- b", "t", &c).ok());
  EXPECT_FALSE(ApplyYamlText("port: {", "t", &c).ok());
  EXPECT_FALSE(ApplyYamlText("port: 70000", "t", &c).ok());
  EXPECT_TRUE(ApplyYamlText("", "t", &c).ok());
  fs::remove_all(dir);
}

TEST(Config, Finalize) {
  fs::path dir = fs::temp_directory_path() / ("itkit-config-" + RandomHex(4));
  fs::create_directories(dir / "models");
  std::ofstream(dir / "key") << "  s3cret\n";
  ServerConfig c;
  c.cache_dir = (dir / "cache").string();
  c.model_dir = (dir / "models").string();
  c.api_key_file = (dir / "key").string();
  ASSERT_TRUE(FinalizeConfig(&c).ok());
  EXPECT_EQ(c.api_key, "s3cret");
  EXPECT_TRUE(fs::is_directory(dir / "cache"));

  ServerConfig missing;
  missing.cache_dir = c.cache_dir;
  missing.model_dir = (dir / "nope").string();
  Status st = FinalizeConfig(&missing);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("no such directory"), std::string::npos);

  ServerConfig both = c;
  both.api_key = "x";
  EXPECT_FALSE(FinalizeConfig(&both).ok());
  ServerConfig badcert;
  badcert.cache_dir = c.cache_dir;
  badcert.tls_cert = (dir / "none.pem").string();
  EXPECT_FALSE(FinalizeConfig(&badcert).ok());
  fs::remove_all(dir);
  EXPECT_NE(HelpText().find("--model-dir DIR"), std::string::npos);
}

// Restores the working directory at the end of a test.
class ChangeDir {
 public:
  explicit ChangeDir(const fs::path& dir) : old_(fs::current_path()) { fs::current_path(dir); }
  ~ChangeDir() { fs::current_path(old_); }

 private:
  fs::path old_;
};

// A relative --model-dir (here: "models" from the folder that holds it) and
// relative paths in a --config file become absolute once, at startup; in the
// file they are relative to the file's folder, whatever the working directory.
TEST(Config, RelativePathsBecomeAbsolute) {
  fs::path dir = fs::temp_directory_path() / ("itkit-config-" + RandomHex(4));
  fs::create_directories(dir / "etc" / "models");
  fs::create_directories(dir / "shared");
  fs::create_directories(dir / "models");
  std::ofstream(dir / "etc" / "key") << "k\n";
  std::ofstream(dir / "etc" / "server.yaml") << "model_dir: models\nmodel_roots: [../shared, /abs/root]\n"
                                               "cache_dir: cache/\napi_key_file: key\ntls_cert: ./certs/s.pem\n";
  {
    ChangeDir cd(dir);
    auto cl = Parse({"--config", "etc/server.yaml"});
    ASSERT_TRUE(cl.ok()) << cl.status().message();
    EXPECT_EQ(cl->config.model_dir, (dir / "etc" / "models").string());
    EXPECT_EQ(cl->config.model_roots,
              (std::vector<std::string>{(dir / "shared").string(), "/abs/root"}));
    EXPECT_EQ(cl->config.cache_dir, (dir / "etc" / "cache").string());
    EXPECT_EQ(cl->config.api_key_file, (dir / "etc" / "key").string());
    EXPECT_EQ(cl->config.tls_cert, (dir / "etc" / "certs" / "s.pem").string());

    // The command line stays relative to the working directory, made absolute
    // by FinalizeConfig.
    auto rel = Parse({"--config", "etc/server.yaml", "--model-dir", "models", "--model-root", "shared/"});
    ASSERT_TRUE(rel.ok()) << rel.status().message();
    EXPECT_EQ(rel->config.model_dir, "models");
    ServerConfig c = rel->config;
    c.tls_cert.clear();
    ASSERT_TRUE(FinalizeConfig(&c).ok());
    EXPECT_EQ(c.model_dir, (dir / "models").string());
    EXPECT_EQ(c.model_roots, (std::vector<std::string>{(dir / "shared").string()}));
    EXPECT_EQ(c.api_key, "k");
  }
  EXPECT_EQ(AbsolutePath("a/../b/", "/base"), "/base/b");
  EXPECT_EQ(AbsolutePath("/x/./y", "/base"), "/x/y");
  EXPECT_EQ(AbsolutePath("", "/base"), "");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace itkit::server
