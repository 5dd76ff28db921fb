#include "itkit/passes.h"

#include <algorithm>

#include "passes/pass_list.h"

namespace itkit {

const std::vector<PassInfo>& AllPasses() {
  static const std::vector<PassInfo> passes = {
      {"eliminate_identity", "removes Identity and inference-mode Dropout", passes::EliminateIdentity},
      {"fold_constants", "evaluates nodes whose inputs are all constants", passes::FoldConstants},
      {"lower_einsum", "an Einsum that is a batched matrix product becomes Transpose -> MatMul -> Transpose",
       passes::LowerEinsum},
      {"fold_batchnorm_into_conv", "folds an inference BatchNormalization into the preceding Conv",
       passes::FoldBatchNormIntoConv},
      {"recognize_group_norm", "turns torch's Reshape-InstanceNorm-Reshape-Mul-Add export into GroupNorm",
       passes::RecognizeGroupNorm},
      {"fuse_norm_activation", "InstanceNorm/GroupNorm followed by an activation becomes one GroupNorm",
       passes::FuseNormActivation},
      {"fuse_norm_residual", "GroupNorm -> Add(skip of the same shape) [-> activation] becomes one GroupNorm",
       passes::FuseNormResidual},
      {"split_conv_over_concat",
       "a Conv reading only a channel Concat becomes one FusedConv per part, each adding into the next",
       passes::SplitConvOverConcat},
      {"drop_conv_bias_before_norm", "drops the bias of a Conv read only by a per-channel norm (its mean removes it)",
       passes::DropConvBiasBeforeNorm},
      {"fuse_conv_activation", "Conv (+bias) followed by an activation becomes FusedConv", passes::FuseConvActivation},
      {"eliminate_dead_nodes", "removes nodes whose outputs nobody reads", passes::EliminateDeadNodes},
      {"fuse_elementwise", "chains of 2-16 elementwise float ops become one FusedElementwise (after the others)",
       passes::FuseElementwise, /*after_others=*/true},
  };
  return passes;
}

Status RunPasses(Graph& graph, const std::vector<std::string>& disabled, std::vector<std::string>* applied) {
  for (const std::string& name : disabled) {
    const auto& all = AllPasses();
    if (std::none_of(all.begin(), all.end(), [&](const PassInfo& p) { return name == p.name; }))
      return InvalidArgument("unknown pass '", name, "' in disabled_passes");
  }
  // Runs `pass` unless disabled; true if it changed the graph.
  auto run = [&](const PassInfo& pass) -> Result<bool> {
    if (std::find(disabled.begin(), disabled.end(), pass.name) != disabled.end()) return false;
    bool changed = false;
    ITKIT_RETURN_IF_ERROR(pass.run(graph, changed).WithContext(std::string("pass ") + pass.name));
    if (changed && applied && std::find(applied->begin(), applied->end(), pass.name) == applied->end())
      applied->push_back(pass.name);
    return changed;
  };
  constexpr int kMaxRounds = 4;
  for (int round = 0; round < kMaxRounds; ++round) {
    bool any = false;
    for (const PassInfo& pass : AllPasses()) {
      if (pass.after_others) continue;
      ITKIT_ASSIGN_OR_RETURN(bool changed, run(pass));
      any = any || changed;
    }
    if (!any) break;
  }
  for (const PassInfo& pass : AllPasses()) {
    if (!pass.after_others) continue;
    ITKIT_RETURN_IF_ERROR(run(pass).status());
  }
  return ValidateAndSortGraph(graph);
}

}  // namespace itkit
