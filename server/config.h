// Server options: defaults < YAML file (--config) < command line. Each option
// has one name: --some-option on the command line, some_option in YAML.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "itkit/status.h"

namespace itkit::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;
  bool debug = false;
  std::string model_dir;                 // *.onnx loaded at start; also a model root
  std::vector<std::string> model_roots;  // other directories model_path may point into
  std::string api_key;                   // "" = no authentication
  std::string api_key_file;
  std::string tls_cert;                  // PEM with certificate and private key
  int64_t max_upload_mb = 1024;
  int threads = 0;                       // CPU threads per inference (0 = all cores)
  int http_threads = 32;                 // connection threads
  int queue = 16;                        // waiting inference requests per device
  int device_workers = 1;                // inferences running at once per device
  std::string cache_dir;                 // temporary uploads/results, uploaded models
  double request_timeout = 600;          // s, one inference from queueing to result
  double upload_timeout = 600;           // s, whole request body
  double io_timeout = 30;                // s, one network read/write (stalled client)
  double job_ttl = 3600;                 // s, finished job results are kept
  int max_jobs = 1000;                   // jobs remembered (finished ones expire first)
  std::vector<std::string> cors_origins = {"*"};  // Access-Control-Allow-Origin; empty = off
  int64_t max_voxels = int64_t{1} << 30;  // largest image accepted
  double shutdown_grace = 10;            // s running jobs may finish after SIGTERM

  std::string config_file;  // informational: where YAML options came from
};

struct CommandLine {
  ServerConfig config;
  bool help = false;
  bool version = false;
};

// Parses argv, reading the --config file first so the command line wins.
Result<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// Applies a YAML mapping of options (exposed for tests). Relative paths
// (model_dir, model_roots, cache_dir, tls_cert, api_key_file) are taken
// relative to base_dir, the config file's folder; "" keeps them as written.
Status ApplyYamlText(const std::string& yaml_text, const std::string& origin, ServerConfig* config,
                     const std::string& base_dir = "");

// `path` made absolute (relative: to base, or to the working directory when
// base is ""), normalised, without a trailing '/'.
std::string AbsolutePath(const std::string& path, const std::string& base = "");

// Reads the API key file and environment, checks values and directories,
// creates the cache directory. Messages are one line, for the terminal.
Status FinalizeConfig(ServerConfig* config);

std::string HelpText();

}  // namespace itkit::server
