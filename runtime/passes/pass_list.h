// The passes, one file each (same name); AllPasses() in passes.cpp lists them in order.
#pragma once

#include "itkit/graph.h"

namespace itkit::passes {

Status EliminateIdentity(Graph& graph, bool& changed);       // eliminate_identity.cpp
Status FoldConstants(Graph& graph, bool& changed);           // fold_constants.cpp
Status LowerEinsum(Graph& graph, bool& changed);             // lower_einsum.cpp
Status FoldBatchNormIntoConv(Graph& graph, bool& changed);   // fold_batchnorm_into_conv.cpp
Status RecognizeGroupNorm(Graph& graph, bool& changed);      // recognize_group_norm.cpp
Status FuseNormActivation(Graph& graph, bool& changed);      // fuse_norm_activation.cpp
Status FuseNormResidual(Graph& graph, bool& changed);        // fuse_norm_residual.cpp
Status SplitConvOverConcat(Graph& graph, bool& changed);     // split_conv_over_concat.cpp
Status DropConvBiasBeforeNorm(Graph& graph, bool& changed);  // drop_conv_bias_before_norm.cpp
Status FuseConvActivation(Graph& graph, bool& changed);      // fuse_conv_activation.cpp
Status EliminateDeadNodes(Graph& graph, bool& changed);      // eliminate_dead_nodes.cpp
Status FuseElementwise(Graph& graph, bool& changed);         // fuse_elementwise.cpp (after the others)

}  // namespace itkit::passes
