#include "server/config.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "server/temp_files.h"

namespace itkit::server {

namespace fs = std::filesystem;

namespace {

using Setter = std::function<Status(ServerConfig&, const std::string&)>;

struct Option {
  const char* name;   // command line, without "--"; YAML key with '_' for '-'
  const char* arg;    // nullptr: a flag
  const char* help;
  Setter set;
  bool list = false;  // repeatable; a YAML sequence
  bool path = false;  // a file or directory: relative in a YAML file = relative to the file's folder
};

Status ParseInt(const std::string& name, const std::string& v, int64_t lo, int64_t hi, int64_t* out) {
  int64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size()) return InvalidArgument("--", name, ": '", v, "' is not an integer");
  if (x < lo || x > hi) return InvalidArgument("--", name, ": ", x, " is out of range [", lo, ", ", hi, "]");
  *out = x;
  return Status::Ok();
}

Status ParseSeconds(const std::string& name, const std::string& v, double* out) {
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno != 0 || !(x > 0) || x > 1e7) {
    return InvalidArgument("--", name, ": '", v, "' is not a positive number of seconds");
  }
  *out = x;
  return Status::Ok();
}

Status ParseBool(const std::string& name, const std::string& v, bool* out) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") *out = true;
  else if (v == "false" || v == "0" || v == "no" || v == "off") *out = false;
  else return InvalidArgument("--", name, ": '", v, "' is not a boolean");
  return Status::Ok();
}

template <typename T>
Setter IntSetter(const char* name, T ServerConfig::*field, int64_t lo, int64_t hi) {
  return [=](ServerConfig& c, const std::string& v) {
    int64_t x = 0;
    ITKIT_RETURN_IF_ERROR(ParseInt(name, v, lo, hi, &x));
    c.*field = static_cast<T>(x);
    return Status::Ok();
  };
}

Setter SecondsSetter(const char* name, double ServerConfig::*field) {
  return [=](ServerConfig& c, const std::string& v) { return ParseSeconds(name, v, &(c.*field)); };
}

Setter StringSetter(const char* name, std::string ServerConfig::*field) {
  return [=](ServerConfig& c, const std::string& v) {
    if (v.empty()) return InvalidArgument("--", name, " needs a value");
    c.*field = v;
    return Status::Ok();
  };
}

const std::vector<Option>& Options() {
  static const std::vector<Option> options = {
      {"host", "HOST", "Host address (default: 127.0.0.1; 0.0.0.0 for all interfaces)",
       StringSetter("host", &ServerConfig::host)},
      {"port", "PORT", "Port number (default: 8000)", IntSetter("port", &ServerConfig::port, 1, 65535)},
      {"debug", nullptr, "Enable debug mode (verbose logging)",
       [](ServerConfig& c, const std::string& v) { return ParseBool("debug", v, &c.debug); }},
      {"model-dir", "DIR", "Auto-load models (*.onnx, optional NAME.yaml sidecars) from directory",
       StringSetter("model-dir", &ServerConfig::model_dir), false, true},
      {"model-root", "DIR", "Another directory model_path may point into (repeatable)",
       [](ServerConfig& c, const std::string& v) {
         if (v.empty()) return InvalidArgument("--model-root needs a value");
         c.model_roots.push_back(v);
         return Status::Ok();
       },
       true, true},
      {"api-key", "KEY", "Require 'Authorization: Bearer KEY' (also: ITKIT_API_KEY environment variable)",
       StringSetter("api-key", &ServerConfig::api_key)},
      {"api-key-file", "FILE", "Read the API key from FILE", StringSetter("api-key-file", &ServerConfig::api_key_file),
       false, true},
      {"tls-cert", "PEM", "Serve HTTPS with this PEM file (certificate and private key)",
       StringSetter("tls-cert", &ServerConfig::tls_cert), false, true},
      {"max-upload-mb", "N", "Largest request body in MiB (default: 1024)",
       IntSetter("max-upload-mb", &ServerConfig::max_upload_mb, 1, 1 << 20)},
      {"threads", "N", "CPU threads per inference (default: 0 = all cores)",
       IntSetter("threads", &ServerConfig::threads, 0, 4096)},
      {"http-threads", "N", "Connection threads (default: 32)",
       IntSetter("http-threads", &ServerConfig::http_threads, 4, 1024)},
      {"queue", "N", "Inference requests that may wait per device before 503 (default: 16)",
       IntSetter("queue", &ServerConfig::queue, 1, 100000)},
      {"device-workers", "N", "Inferences running at once per device (default: 1)",
       IntSetter("device-workers", &ServerConfig::device_workers, 1, 64)},
      {"cache-dir", "DIR", "Temporary files and uploaded models (default: ~/.cache/itkit-server)",
       StringSetter("cache-dir", &ServerConfig::cache_dir), false, true},
      {"request-timeout", "S", "Time limit of one inference, queue included (default: 600)",
       SecondsSetter("request-timeout", &ServerConfig::request_timeout)},
      {"upload-timeout", "S", "Time limit for receiving one request body (default: 600)",
       SecondsSetter("upload-timeout", &ServerConfig::upload_timeout)},
      {"io-timeout", "S", "Time limit of one network read or write (default: 30)",
       SecondsSetter("io-timeout", &ServerConfig::io_timeout)},
      {"job-ttl", "S", "How long finished job results are kept (default: 3600)",
       SecondsSetter("job-ttl", &ServerConfig::job_ttl)},
      {"max-jobs", "N", "Jobs remembered at once (default: 1000)", IntSetter("max-jobs", &ServerConfig::max_jobs, 1, 1000000)},
      {"cors-origin", "ORIGIN", "Allowed CORS origin, '*' for any (repeatable; default: *; 'none' disables)",
       [](ServerConfig& c, const std::string& v) {
         if (v.empty()) return InvalidArgument("--cors-origin needs a value");
         if (v != "none") c.cors_origins.push_back(v);
         return Status::Ok();
       },
       true},
      {"max-voxels", "N", "Largest image in voxels (default: 1073741824)",
       IntSetter("max-voxels", &ServerConfig::max_voxels, 1, int64_t{1} << 40)},
      {"shutdown-grace", "S", "Seconds running inferences may finish on SIGINT/SIGTERM (default: 10)",
       SecondsSetter("shutdown-grace", &ServerConfig::shutdown_grace)},
  };
  return options;
}

const Option* FindOption(const std::string& name) {
  for (const auto& o : Options()) {
    if (name == o.name) return &o;
  }
  return nullptr;
}

std::string YamlKey(const char* name) {
  std::string k = name;
  for (auto& c : k) c = c == '-' ? '_' : c;
  // List options take plural keys in YAML.
  if (k == "model_root") return "model_roots";
  if (k == "cors_origin") return "cors_origins";
  return k;
}

// List options: the first value from a source replaces the default list.
void ClearList(ServerConfig& c, const std::string& name) {
  if (name == "model-root") c.model_roots.clear();
  if (name == "cors-origin") c.cors_origins.clear();
}

Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot read ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return Status::Ok();
}

std::string DefaultCacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/itkit-server";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/itkit-server";
  return "/tmp/itkit-server-" + std::to_string(::getuid());
}

}  // namespace

std::string AbsolutePath(const std::string& path, const std::string& base) {
  if (path.empty()) return path;
  fs::path p(path);
  if (p.is_relative()) {
    std::error_code ec;
    p = base.empty() ? fs::absolute(p, ec) : fs::path(base) / p;
    if (ec) return path;
  }
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

Status ApplyYamlText(const std::string& yaml_text, const std::string& origin, ServerConfig* config,
                     const std::string& base_dir) {
  // yaml-cpp reports errors by throwing; nothing may escape from here.
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (root.IsNull()) return Status::Ok();  // empty file
    if (!root.IsMap()) return InvalidArgument(origin, ": expected a mapping of option: value");
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      const Option* opt = nullptr;
      for (const auto& o : Options()) {
        if (YamlKey(o.name) == key) opt = &o;
      }
      if (opt == nullptr) return InvalidArgument(origin, ": unknown option '", key, "'");
      const YAML::Node& v = kv.second;
      // Relative paths in the file are relative to the file's folder, so a
      // config works whatever directory the server is started from.
      auto text = [&](const YAML::Node& n) {
        std::string t = n.as<std::string>();
        return opt->path && !base_dir.empty() && !t.empty() ? AbsolutePath(t, base_dir) : t;
      };
      if (opt->list) {
        ClearList(*config, opt->name);
        if (v.IsSequence()) {
          for (const auto& item : v) {
            if (!item.IsScalar()) return InvalidArgument(origin, ": ", key, ": expected a list of strings");
            ITKIT_RETURN_IF_ERROR(opt->set(*config, text(item)).WithContext(origin));
          }
          continue;
        }
      }
      if (!v.IsScalar()) return InvalidArgument(origin, ": ", key, ": expected a single value");
      ITKIT_RETURN_IF_ERROR(opt->set(*config, text(v)).WithContext(origin));
    }
  } catch (const std::exception& e) {
    std::string msg = e.what();
    return InvalidArgument(origin, ": ", msg);
  }
  return Status::Ok();
}

Result<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine cl;
  // Split into (name, value) first; the config file must be applied before
  // the other options, wherever --config appears.
  std::vector<std::pair<std::string, std::string>> given;
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") { cl.help = true; continue; }
    if (a == "--version") { cl.version = true; continue; }
    if (a.rfind("--", 0) != 0) return InvalidArgument("unexpected argument '", a, "' (see --help)");
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "config") {
      if (!has_value) {
        if (i + 1 >= argc) return InvalidArgument("--config needs a value");
        value = argv[++i];
      }
      config_path = value;
      continue;
    }
    const Option* opt = FindOption(name);
    if (opt == nullptr) return InvalidArgument("unknown option --", name, " (see --help)");
    if (opt->arg == nullptr) {
      if (!has_value) value = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) return InvalidArgument("--", name, " needs a value");
      value = argv[++i];
    }
    given.emplace_back(name, value);
  }
  if (cl.help || cl.version) return cl;
  if (!config_path.empty()) {
    std::string text;
    ITKIT_RETURN_IF_ERROR(ReadFile(config_path, &text).WithContext("--config"));
    std::error_code ec;
    std::string base = fs::absolute(config_path, ec).parent_path().string();
    if (ec) return InvalidArgument("--config ", config_path, ": ", ec.message());
    ITKIT_RETURN_IF_ERROR(ApplyYamlText(text, "config " + config_path, &cl.config, base));
    cl.config.config_file = config_path;
  }
  std::set<std::string> lists_seen;
  for (const auto& [name, value] : given) {
    const Option* opt = FindOption(name);
    if (opt->list && lists_seen.insert(name).second) ClearList(cl.config, name);
    ITKIT_RETURN_IF_ERROR(opt->set(cl.config, value));
  }
  return cl;
}

Status FinalizeConfig(ServerConfig* c) {
  std::error_code ec;
  if (!c->api_key.empty() && !c->api_key_file.empty()) {
    return InvalidArgument("give --api-key or --api-key-file, not both");
  }
  if (!c->api_key_file.empty()) {
    std::string text;
    ITKIT_RETURN_IF_ERROR(ReadFile(c->api_key_file, &text).WithContext("--api-key-file"));
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.erase(0, 1);
    if (text.empty()) return InvalidArgument("--api-key-file ", c->api_key_file, " is empty");
    c->api_key = text;
  }
  if (c->api_key.empty()) {
    if (const char* env = std::getenv("ITKIT_API_KEY"); env && *env) c->api_key = env;
  }
  // Model directories become absolute once, here: everything later (the
  // registry, the path policy, /api/info) sees one spelling of each.
  if (!c->model_dir.empty()) {
    if (!fs::is_directory(c->model_dir, ec)) {
      return NotFound("--model-dir ", c->model_dir, ": no such directory");
    }
    c->model_dir = AbsolutePath(c->model_dir);
  }
  for (auto& root : c->model_roots) {
    if (!fs::is_directory(root, ec)) return NotFound("--model-root ", root, ": no such directory");
    root = AbsolutePath(root);
  }
  if (!c->tls_cert.empty() && ::access(c->tls_cert.c_str(), R_OK) != 0) {
    return NotFound("--tls-cert ", c->tls_cert, ": cannot read the file");
  }
  for (const auto& o : c->cors_origins) {
    if (o.find_first_of("\r\n") != std::string::npos) return InvalidArgument("--cors-origin: invalid value");
  }
  if (c->cache_dir.empty()) c->cache_dir = DefaultCacheDir();
  ITKIT_RETURN_IF_ERROR(MakeDirs(c->cache_dir).WithContext("--cache-dir"));
  c->cache_dir = fs::canonical(c->cache_dir, ec).string();
  if (ec) return IoError("--cache-dir ", c->cache_dir, ": ", ec.message());
  return Status::Ok();
}

std::string HelpText() {
  std::string s =
      "usage: itkit_server [--host HOST] [--port PORT] [--debug] [--model-dir DIR] [options]\n\n"
      "ITKIT Inference Server: segments 3D medical images with ONNX models over a REST API.\n\n"
      "Options:\n";
  auto add = [&](const std::string& flag, const std::string& help) {
    std::string line = "  " + flag;
    if (line.size() < 28) line.resize(28, ' ');
    else line += "\n" + std::string(28, ' ');
    s += line + help + "\n";
  };
  add("-h, --help", "Show this help and exit");
  add("--version", "Print the version and exit");
  add("--config FILE", "Read options from a YAML file (keys as below, '-' written '_'; command line wins;"
                       " relative paths in it are relative to its folder)");
  for (const auto& o : Options()) {
    add(std::string("--") + o.name + (o.arg ? std::string(" ") + o.arg : ""), o.help);
  }
  return s;
}

}  // namespace itkit::server
