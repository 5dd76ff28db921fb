#include "shape_infer/window_geometry.h"

#include <algorithm>
#include <string>

namespace itkit::shape_rules {
namespace {

enum class AutoPad { kNotSet, kValid, kSameUpper, kSameLower };

Result<AutoPad> ReadAutoPad(const Node& node) {
  const std::string s = node.attrs.GetString("auto_pad", "NOTSET");
  if (s == "NOTSET" || s.empty()) return AutoPad::kNotSet;
  if (s == "VALID") return AutoPad::kValid;
  if (s == "SAME_UPPER") return AutoPad::kSameUpper;
  if (s == "SAME_LOWER") return AutoPad::kSameLower;
  return InvalidArgument(node.Describe(), ": unknown auto_pad '", s, "'");
}

// An int list attribute of exactly `n` values, or `def` repeated when absent.
Result<std::vector<int64_t>> ReadList(const Node& node, const char* name, size_t n, int64_t def) {
  const Attribute* a = node.attrs.Find(name);
  if (!a) return std::vector<int64_t>(n, def);
  if (a->kind != Attribute::Kind::kInts) return InvalidArgument(node.Describe(), ": '", name, "' must be ints");
  if (a->ints.size() != n)
    return InvalidArgument(node.Describe(), ": '", name, "' has ", a->ints.size(), " values, expected ", n);
  return a->ints;
}

int64_t CeilDiv(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

}  // namespace

Result<WindowGeometry> ComputeWindowGeometry(const Node& node, WindowOp op, const Shape& x_shape,
                                             const std::vector<int64_t>& weight_kernel) {
  const std::string who = node.Describe();
  if (x_shape.size() < 3)
    return InvalidArgument(who, ": input must have rank >= 3 (N, C, spatial...), got ",
                           ShapeToString(x_shape));
  WindowGeometry g;
  g.spatial = static_cast<int>(x_shape.size()) - 2;
  const size_t n = static_cast<size_t>(g.spatial);
  g.in.assign(x_shape.begin() + 2, x_shape.end());

  if (node.attrs.Has("kernel_shape")) {
    ITKIT_ASSIGN_OR_RETURN(g.kernel, ReadList(node, "kernel_shape", n, 1));
    if (!weight_kernel.empty() && g.kernel != weight_kernel)
      return InvalidArgument(who, ": kernel_shape ", ShapeToString(g.kernel),
                             " does not match the weights' ", ShapeToString(weight_kernel));
  } else if (!weight_kernel.empty()) {
    g.kernel = weight_kernel;
  } else {
    return InvalidArgument(who, ": missing required attribute 'kernel_shape'");
  }
  if (g.kernel.size() != n)
    return InvalidArgument(who, ": kernel has ", g.kernel.size(), " axes, input has ", n, " spatial axes");
  ITKIT_ASSIGN_OR_RETURN(g.strides, ReadList(node, "strides", n, 1));
  ITKIT_ASSIGN_OR_RETURN(g.dilations, ReadList(node, "dilations", n, 1));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> pads, ReadList(node, "pads", 2 * n, 0));
  ITKIT_ASSIGN_OR_RETURN(AutoPad auto_pad, ReadAutoPad(node));
  const bool ceil_mode = op == WindowOp::kPool && node.attrs.GetInt("ceil_mode", 0) != 0;
  g.output_padding.assign(n, 0);
  std::vector<int64_t> output_shape;
  if (op == WindowOp::kConvTranspose) {
    ITKIT_ASSIGN_OR_RETURN(g.output_padding, ReadList(node, "output_padding", n, 0));
    output_shape = node.attrs.GetInts("output_shape");
    // Some exporters write the full [N, C, spatial...] shape; only the spatial part counts.
    if (output_shape.size() == n + 2) output_shape.erase(output_shape.begin(), output_shape.begin() + 2);
    if (!output_shape.empty() && output_shape.size() != n)
      return InvalidArgument(who, ": output_shape has ", output_shape.size(), " values, expected ", n);
  }

  g.out.resize(n);
  g.pad_begin.resize(n);
  g.pad_end.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = g.in[i], k = g.kernel[i], s = g.strides[i], d = g.dilations[i];
    if (in < 0) return InvalidArgument(who, ": negative input extent");
    if (k <= 0 || s <= 0 || d <= 0)
      return InvalidArgument(who, ": kernel_shape, strides and dilations must be positive");
    if (pads[i] < 0 || pads[i + n] < 0) return InvalidArgument(who, ": pads must be >= 0");
    const int64_t dk = (k - 1) * d + 1;  // dilated kernel extent
    if (op == WindowOp::kConvTranspose) {
      const int64_t opad = g.output_padding[i];
      if (opad < 0) return InvalidArgument(who, ": output_padding must be >= 0");
      if (opad >= s && opad >= d)
        return InvalidArgument(who, ": output_padding ", opad, " must be smaller than stride or dilation");
      const int64_t full = s * (in - 1) + opad + dk;  // unpadded output extent
      int64_t target = -1;
      if (!output_shape.empty()) {
        target = output_shape[i];
      } else if (auto_pad == AutoPad::kSameUpper || auto_pad == AutoPad::kSameLower) {
        target = in * s;
      }
      if (target >= 0) {
        // Padding is whatever crops `full` to the target; SAME_UPPER (and NOTSET)
        // crop more at the end, as the ONNX test data has it. A target larger than
        // `full` extends the end like output_padding does.
        const int64_t total = full - target;
        if (total >= 0) {
          g.pad_begin[i] = auto_pad == AutoPad::kSameLower ? total - total / 2 : total / 2;
          g.pad_end[i] = total - g.pad_begin[i];
        } else {
          g.pad_begin[i] = g.pad_end[i] = 0;
          g.output_padding[i] = opad - total;
        }
        g.out[i] = target;
      } else {
        if (auto_pad == AutoPad::kValid) {
          g.pad_begin[i] = g.pad_end[i] = 0;
        } else {
          g.pad_begin[i] = pads[i];
          g.pad_end[i] = pads[i + n];
        }
        g.out[i] = full - g.pad_begin[i] - g.pad_end[i];
      }
    } else if (auto_pad == AutoPad::kValid) {
      g.pad_begin[i] = g.pad_end[i] = 0;
      if (in < dk) return InvalidArgument(who, ": input extent ", in, " is smaller than the kernel extent ", dk, " on axis ", i + 2);
      g.out[i] = (in - dk) / s + 1;
    } else if (auto_pad == AutoPad::kSameUpper || auto_pad == AutoPad::kSameLower) {
      g.out[i] = CeilDiv(in, s);
      const int64_t total = std::max<int64_t>(0, (g.out[i] - 1) * s + dk - in);
      g.pad_begin[i] = auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
      g.pad_end[i] = total - g.pad_begin[i];
    } else {
      g.pad_begin[i] = pads[i];
      g.pad_end[i] = pads[i + n];
      const int64_t span = in + g.pad_begin[i] + g.pad_end[i] - dk;
      if (span < 0)
        return InvalidArgument(who, ": padded input extent ", in + g.pad_begin[i] + g.pad_end[i],
                               " is smaller than the kernel extent ", dk, " on axis ", i + 2);
      if (ceil_mode) {
        g.out[i] = CeilDiv(span, s) + 1;
        // A last window that would start inside the end padding is dropped (PyTorch,
        // and the ONNX spec since opset 19 clarified it).
        if ((g.out[i] - 1) * s >= in + g.pad_begin[i]) --g.out[i];
      } else {
        g.out[i] = span / s + 1;
      }
    }
    if (g.out[i] < 0) return InvalidArgument(who, ": computed output extent is negative on axis ", i + 2);
  }
  return g;
}

}  // namespace itkit::shape_rules
