// Channels-last storage between kernels (Backend::prefers_channels_last).
//
// cuDNN's fast FP16 3-D convolutions read and write NDHWC. With values stored NCDHW,
// every convolution paid a transpose on each side (about a third of its time on an
// H200). A backend that prefers channels-last is offered each node's channels-last
// form: its data inputs and outputs tagged `ValueDesc::channels_last`, i.e. a value of
// logical shape [N, C, S1..Sk] stored as [N, S1..Sk, C]. Shapes stay logical
// everywhere; only kernels and the planner's layout steps look at the tag.
#pragma once

#include <cstdint>
#include <vector>

#include "itkit/backend.h"
#include "itkit/tensor.h"

namespace itkit {

// Ranks that have a channels-last form: N, C and 1-3 spatial dims.
inline bool HasChannelsLastForm(const Shape& s) { return s.size() >= 3 && s.size() <= 5; }

// [N, C, S1..Sk] -> [N, S1..Sk, C]: the row-major shape of the stored data.
Shape ChannelsLastStoredShape(const Shape& logical);
// Element strides of the logical axes [N, C, S1..Sk] of a dense value stored row-major
// or, with `channels_last`, as [N, S1..Sk, C] (e.g. for cuDNN descriptors, which take
// logical dims with strides). Ranks without a channels-last form are row-major.
std::vector<int64_t> LogicalStrides(const Shape& logical, bool channels_last);
// Transpose perms between the logical order and the channels-last stored order.
std::vector<int64_t> ToChannelsLastPerm(int rank);    // [0, 2, .., r-1, 1]
std::vector<int64_t> FromChannelsLastPerm(int rank);  // [0, r-1, 1, .., r-2]

// The op families with a channels-last form: convolutions and channel norms read the
// layout themselves; elementwise ops and Concat (on the channel axis) run on the stored
// data as it is (after StoredSignature; Concat on the last stored axis).
enum class ChannelsLastKind { kNone, kConvolution, kChannelNorm, kElementwise, kConcat };
ChannelsLastKind ChannelsLastKindOf(const Node& node);

// Which inputs and outputs of a node take channels-last storage in its channels-last
// form, for this (logical) signature.
struct ChannelsLastForm {
  std::vector<bool> inputs, outputs;
  // Convolutions gain from NDHWC even when their input is stored NCDHW (they convert it
  // anyway); other ops take the form only when an input already is channels-last.
  bool converts_inputs = false;
};
// False when the op has no channels-last form for this signature (its axes or
// broadcasts depend on the layout, or it is not on the list).
bool ChannelsLastCandidate(const NodeSignature& sig, ChannelsLastForm* form);

// The signature with channels-last values replaced by their stored shapes, tags
// cleared: what a layout-blind kernel (elementwise, Cast) runs on unchanged.
NodeSignature StoredSignature(const NodeSignature& sig);
bool HasChannelsLast(const NodeSignature& sig);

// Host data conversions (for the CPU emulation and tests); element size 1, 2, 4 or 8.
// `logical` is the logical shape of both.
void ToChannelsLast(const void* row_major, void* channels_last, const Shape& logical, size_t element_bytes);
void FromChannelsLast(const void* channels_last, void* row_major, const Shape& logical, size_t element_bytes);

}  // namespace itkit
