// The fusion passes on the zoo models they target (tests/models: PyTorch's outputs are the
// references): op_resenc (nnU-Net ResEnc blocks + SiLU), mednext (exported GELU) and unetr
// (attention Einsums lowered to MatMul). Each model runs fused and with the passes
// disabled; both must match PyTorch like the zoo tests (|a - b| <= 1e-5 + 1e-4 |b|), and
// the fused graph must really be fused.
// Needs the generated zoo: CTest's zoo_fusions (tests/CMakeLists.txt) runs it after
// zoo_generate with ITKIT_ZOO_DIR set; elsewhere it is skipped.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "itkit/onnx_importer.h"
#include "itkit/session.h"

namespace itkit {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kAllFusions = {"fuse_norm_activation", "fuse_norm_residual",
                                              "drop_conv_bias_before_norm", "fuse_conv_activation",
                                              "fuse_elementwise"};

struct DataSet {
  Tensor input, output;
};

fs::path ZooCase(const std::string& name) {
  const char* dir = std::getenv("ITKIT_ZOO_DIR");
  return dir && *dir ? fs::path(dir) / name : fs::path();
}

std::vector<DataSet> LoadDataSets(const fs::path& dir) {
  std::vector<DataSet> sets;
  for (int k = 0; fs::exists(dir / ("test_data_set_" + std::to_string(k))); ++k) {
    const fs::path set = dir / ("test_data_set_" + std::to_string(k));
    auto in = LoadOnnxTensor((set / "input_0.pb").string());
    auto out = LoadOnnxTensor((set / "output_0.pb").string());
    EXPECT_TRUE(in.ok() && out.ok());
    if (in.ok() && out.ok()) sets.push_back({in->tensor, out->tensor});
  }
  return sets;
}

// Runs every data set and checks allclose against PyTorch; returns the session.
std::unique_ptr<Session> RunAgainstTorch(const fs::path& dir, const std::vector<std::string>& disabled) {
  auto model = LoadOnnxModel((dir / "model.onnx").string());
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  SessionOptions o;
  o.disabled_passes = disabled;
  auto session = Session::Create(std::move(model).value(), o);
  EXPECT_TRUE(session.ok()) << session.status().ToString();
  if (!session.ok()) return nullptr;
  const std::vector<DataSet> sets = LoadDataSets(dir);
  EXPECT_FALSE(sets.empty());
  for (const DataSet& s : sets) {
    auto out = (*session)->Run(std::vector<Tensor>{s.input});
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    if (!out.ok()) continue;
    const Tensor& got = (*out)[0];
    EXPECT_EQ(got.shape(), s.output.shape());
    if (got.shape() != s.output.shape()) continue;
    int64_t bad = 0;
    double worst = 0.0;
    for (int64_t i = 0; i < got.size(); ++i) {
      const double a = got.data<float>()[i], b = s.output.data<float>()[i];
      const double d = std::fabs(a - b);
      worst = std::max(worst, d);
      bad += d > 1e-5 + 1e-4 * std::fabs(b);
    }
    EXPECT_EQ(bad, 0) << "of " << got.size() << " values; max abs error " << worst;
  }
  return std::move(session).value();
}

int CountNodes(const Session& s, const std::string& op, size_t inputs = 0) {
  int n = 0;
  for (const Node& node : s.model().graph.nodes)
    n += node.op_type == op && (inputs == 0 || node.inputs.size() == inputs);
  return n;
}

bool Applied(const Session& s, const std::string& pass) {
  const auto& a = s.applied_passes();
  return std::find(a.begin(), a.end(), pass) != a.end();
}

TEST(ZooFusions, ResEncBlocksMatchPyTorchFusedAndUnfused) {
  const fs::path dir = ZooCase("op_resenc");
  if (dir.empty()) GTEST_SKIP() << "ITKIT_ZOO_DIR is not set (CTest's zoo_fusions sets it)";
  auto fused = RunAgainstTorch(dir, {});
  ASSERT_TRUE(fused);
  EXPECT_TRUE(Applied(*fused, "fuse_norm_residual"));
  EXPECT_TRUE(Applied(*fused, "fuse_elementwise"));
  // Blocks 1 (identity skip), 2 (1x1 conv + IN skip) and 4 (skip: block 3's output)
  // fuse; block 3's strided AvgPool skip has a size not provably the main path's, so
  // its Add + LeakyRelu become a FusedElementwise, as does the SiLU.
  EXPECT_EQ(CountNodes(*fused, "GroupNorm", 4), 3);
  EXPECT_EQ(CountNodes(*fused, "Add"), 0);
  EXPECT_EQ(CountNodes(*fused, "FusedElementwise"), 2);
  // The stem's and blocks' 9 biased convs each feed an InstanceNorm: only the head's
  // conv (a graph output) keeps its bias.
  EXPECT_TRUE(Applied(*fused, "drop_conv_bias_before_norm"));
  EXPECT_EQ(CountNodes(*fused, "Conv", 3), 1);
  auto plain = RunAgainstTorch(dir, kAllFusions);
  ASSERT_TRUE(plain);
  EXPECT_EQ(CountNodes(*plain, "GroupNorm"), 0);
  EXPECT_EQ(CountNodes(*plain, "Conv", 3), 10);
}

TEST(ZooFusions, MedNeXtGeluMatchesPyTorchFusedAndUnfused) {
  const fs::path dir = ZooCase("mednext");
  if (dir.empty()) GTEST_SKIP() << "ITKIT_ZOO_DIR is not set (CTest's zoo_fusions sets it)";
  auto fused = RunAgainstTorch(dir, {});
  ASSERT_TRUE(fused);
  EXPECT_GE(CountNodes(*fused, "FusedElementwise"), 1);
  EXPECT_EQ(CountNodes(*fused, "Erf"), 0) << "every exported GELU is fused";
  auto plain = RunAgainstTorch(dir, kAllFusions);
  ASSERT_TRUE(plain);
  EXPECT_EQ(CountNodes(*plain, "FusedElementwise"), 0);
}

TEST(ZooFusions, UnetrAttentionEinsumsBecomeMatMul) {
  const fs::path dir = ZooCase("unetr");
  if (dir.empty()) GTEST_SKIP() << "ITKIT_ZOO_DIR is not set (CTest's zoo_fusions sets it)";
  auto lowered = RunAgainstTorch(dir, {});
  ASSERT_TRUE(lowered);
  EXPECT_TRUE(Applied(*lowered, "lower_einsum"));
  // 12 blocks, two attention Einsums each: q k^T and att v.
  EXPECT_EQ(CountNodes(*lowered, "Einsum"), 0);
  auto einsum = RunAgainstTorch(dir, {"lower_einsum"});
  ASSERT_TRUE(einsum);
  EXPECT_EQ(CountNodes(*einsum, "Einsum"), 24);
  EXPECT_EQ(CountNodes(*lowered, "MatMul"), CountNodes(*einsum, "MatMul") + 24);
}

}  // namespace
}  // namespace itkit
