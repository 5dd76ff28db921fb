// Replays the fuzz corpus and every saved crash input through the fuzz entry
// point (server/fuzz/multipart_fuzz.cpp is compiled into this test).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

TEST(FuzzRegressions, CorpusAndCrashInputsParseCleanly) {
  namespace fs = std::filesystem;
  int n = 0;
  for (const char* sub : {"corpus", "regressions"}) {
    fs::path dir = fs::path(ITKIT_SERVER_SOURCE_DIR) / "fuzz" / sub;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file() || e.path().extension() == ".md") continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      // Every parser on every input, whatever its first byte chose.
      for (uint8_t mode = 0; mode < 4; ++mode) {
        std::string d = data.size() >= 2 ? data : std::string(2, '\0') + data;
        d[0] = static_cast<char>(mode);
        LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(d.data()), d.size());
      }
      ++n;
    }
  }
  EXPECT_GT(n, 0);
}

}  // namespace
