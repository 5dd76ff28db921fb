// Builds a Plan for one set of input shapes; see plan.h.
#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "itkit/channels_last.h"
#include "itkit/log.h"
#include "itkit/op_table.h"
#include "session/plan.h"

namespace itkit {
namespace {

// Plan-time evaluation (constant propagation) is limited to small results: the
// Shape→Gather→Concat→Reshape chains torch exports. Large all-constant nodes run as
// ordinary steps so a plan never holds big duplicates of runtime data.
constexpr int64_t kMaxFoldElements = int64_t{1} << 16;

size_t AlignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

Status CheckInput(const ValueInfo& info, const Tensor& t, std::map<std::string, int64_t>& symbols) {
  if (!t.defined()) return InvalidArgument("graph input '", info.name, "' was not given");
  if (info.dtype != DType::kUndefined && t.dtype() != info.dtype)
    return InvalidArgument("graph input '", info.name, "' expects ", DTypeName(info.dtype), ", got ",
                           DTypeName(t.dtype()));
  auto count = CheckedElementCount(t.shape());
  if (!count.ok()) return count.status().WithContext("graph input '" + info.name + "'");
  if (!info.has_shape) return Status::Ok();
  if (info.dims.size() != t.shape().size())
    return InvalidArgument("graph input '", info.name, "' expects rank ", info.dims.size(), ", got shape ",
                           ShapeToString(t.shape()));
  for (size_t d = 0; d < info.dims.size(); ++d) {
    const Dim& dim = info.dims[d];
    const int64_t actual = t.shape()[d];
    if (dim.is_static() && dim.value != actual)
      return InvalidArgument("graph input '", info.name, "' dimension ", d, " must be ", dim.value, ", got ", actual,
                             " (shape ", ShapeToString(t.shape()), ")");
    if (!dim.is_static() && !dim.symbol.empty()) {
      auto [it, inserted] = symbols.emplace(dim.symbol, actual);
      if (!inserted && it->second != actual)
        return InvalidArgument("symbolic dimension '", dim.symbol, "' is ", it->second, " in one input and ", actual,
                               " in graph input '", info.name, "'");
    }
  }
  return Status::Ok();
}

struct Builder {
  const PlanInputs& in;
  Plan& plan;
  std::unordered_map<std::string, int> id_of;  // value name → id (on its home backend)
  std::map<std::pair<int, size_t>, int> device_copy;  // (value, backend) → id
  size_t cpu;  // index of the CPU backend
  std::map<std::pair<int, DType>, int> cast_of;  // (value, dtype) → its Cast, same backend
  std::map<int, int> half_constant;  // f32 constant → its f16 copy, -1 when out of range
  std::map<std::pair<int, bool>, int> layout_of;  // (value, channels_last) → its Transpose

  int AddValue(PlanValue v) {
    plan.values.push_back(std::move(v));
    return static_cast<int>(plan.values.size()) - 1;
  }

  bool ProducesGraphOutput(const Node& node) const {
    for (const std::string& out : node.outputs)
      for (const ValueInfo& g : in.graph->outputs)
        if (!out.empty() && out == g.name) return true;
    return false;
  }

  // What shape inference sees: the value's dtype by the graph (f32 for f16 storage).
  ValueDesc DescOf(int id) const {
    const PlanValue& v = plan.values[static_cast<size_t>(id)];
    return ValueDesc{v.half_of_f32 ? DType::kF32 : v.dtype, v.shape,
                     v.kind == PlanValue::Kind::kConstant && v.backend == cpu ? v.constant : nullptr};
  }

  // `id`'s value converted to `to` by a Cast step on the backend that holds it (on
  // the CPU if that backend has no such Cast).
  Result<int> CastOn(int id, DType to) {
    const auto key = std::make_pair(id, to);
    if (auto it = cast_of.find(key); it != cast_of.end()) return it->second;
    const PlanValue from = plan.values[static_cast<size_t>(id)];  // copy: AddValue reallocates
    Node& cast = plan.owned_nodes.emplace_back();
    cast.name = from.name + "/as_" + std::string(DTypeName(to));
    cast.op_type = "Cast";
    cast.inputs = {from.name};
    cast.outputs = {cast.name};
    cast.attrs.SetInt("to", OnnxCodeOf(to));
    if (to != DType::kF16 && to != DType::kF32) return Internal("storage casts are between f32 and f16");
    // Elementwise: a channels-last value is cast as its stored shape.
    const Shape stored = from.channels_last ? ChannelsLastStoredShape(from.shape) : from.shape;
    NodeSignature sig;
    sig.node = &cast;
    sig.inputs = {ValueDesc{from.dtype, stored, nullptr}};
    sig.outputs = {ValueDesc{to, stored, nullptr}};
    sig.opset = in.graph->onnx_opset();
    Backend& backend = *(*in.backends)[from.backend];
    Result<std::unique_ptr<OpKernel>> kernel = Unsupported("no Cast on ", backend.name());
    if (backend.Supports(sig, nullptr)) kernel = backend.CreateKernel(sig);
    if (!kernel.ok()) {
      if (from.backend == cpu) return kernel.status().WithContext("storage cast of '" + from.name + "'");
      ITKIT_ASSIGN_OR_RETURN(int host, OnBackend(id, cpu));
      ITKIT_ASSIGN_OR_RETURN(int host_cast, CastOn(host, to));
      cast_of[key] = host_cast;
      return host_cast;
    }
    const int cast_id = AddStorageStep(cast, id, std::move(kernel).value(), to, to == DType::kF16, from.channels_last);
    cast_of[key] = cast_id;
    return cast_id;
  }

  // A step the planner inserted (`node`: a Cast or Transpose it owns) on the backend
  // holding value `id`, making a value of the same logical shape stored as given.
  int AddStorageStep(const Node& node, int id, std::unique_ptr<OpKernel> kernel, DType dtype, bool half_of_f32,
                     bool channels_last) {
    const PlanValue& from = plan.values[static_cast<size_t>(id)];
    PlanStep step;
    step.node = &node;
    step.backend = from.backend;
    step.kernel = std::move(kernel);
    step.workspace_bytes = step.kernel->workspace_bytes();
    step.inputs = {id};
    PlanValue v;
    v.name = node.name;
    v.dtype = dtype;
    v.shape = from.shape;
    v.backend = from.backend;
    v.half_of_f32 = half_of_f32;
    v.channels_last = channels_last;
    const int out_id = AddValue(std::move(v));  // `from` may dangle from here on
    step.outputs = {out_id};
    plan.steps.push_back(std::move(step));
    return out_id;
  }

  // `id`'s value in the other layout (channels-last <-> row-major), by a Transpose step
  // on the backend that holds it.
  Result<int> LayoutOn(int id, bool channels_last) {
    const PlanValue from = plan.values[static_cast<size_t>(id)];  // copy: AddValue reallocates
    if (from.channels_last == channels_last) return id;
    const auto key = std::make_pair(id, channels_last);
    if (auto it = layout_of.find(key); it != layout_of.end()) return it->second;
    const int rank = static_cast<int>(from.shape.size());
    Node& t = plan.owned_nodes.emplace_back();
    t.name = from.name + (channels_last ? "/to_channels_last" : "/to_row_major");
    t.op_type = "Transpose";
    t.inputs = {from.name};
    t.outputs = {t.name};
    t.attrs.SetInts("perm", channels_last ? ToChannelsLastPerm(rank) : FromChannelsLastPerm(rank));
    const Shape stored = ChannelsLastStoredShape(from.shape);
    NodeSignature sig;
    sig.node = &t;
    sig.inputs = {ValueDesc{from.dtype, channels_last ? from.shape : stored, nullptr}};
    sig.outputs = {ValueDesc{from.dtype, channels_last ? stored : from.shape, nullptr}};
    sig.opset = in.graph->onnx_opset();
    Backend& backend = *(*in.backends)[from.backend];
    std::string reason;
    if (!backend.Supports(sig, &reason))
      return Internal(backend.name(), " holds channels-last data but cannot transpose '", from.name, "': ", reason);
    ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> kernel, backend.CreateKernel(sig));
    const int out_id = AddStorageStep(t, id, std::move(kernel), from.dtype, from.half_of_f32, channels_last);
    ++plan.stats.layout_transposes;
    layout_of[key] = out_id;
    return out_id;
  }

  // `id`'s value as `dtype` in the given layout on `backend`. Casts run on the device
  // side of a copy; a channels-last value becomes row-major before it leaves its
  // device, a row-major one channels-last after it arrives.
  Result<int> Prepare(int id, DType dtype, size_t backend, bool channels_last) {
    if (plan.values[static_cast<size_t>(id)].channels_last && !channels_last) {
      ITKIT_ASSIGN_OR_RETURN(id, LayoutOn(id, false));
    }
    ITKIT_ASSIGN_OR_RETURN(int ready, Prepare(id, dtype, backend));
    if (channels_last) return LayoutOn(ready, true);
    return ready;
  }

  // `id`'s value as `dtype` on `backend`, layout unchanged.
  Result<int> Prepare(int id, DType dtype, size_t backend) {
    const PlanValue& v = plan.values[static_cast<size_t>(id)];
    if (v.dtype == dtype || dtype == DType::kUndefined) return OnBackend(id, backend);
    if (v.backend != cpu || backend == cpu) {
      ITKIT_ASSIGN_OR_RETURN(int cast, CastOn(id, dtype));
      return OnBackend(cast, backend);
    }
    ITKIT_ASSIGN_OR_RETURN(int moved, OnBackend(id, backend));
    return CastOn(moved, dtype);
  }

  // An f16 copy of a CPU f32 constant, made once per plan; -1 when a finite value is
  // beyond f16's range (the node then keeps f32).
  Result<int> HalfConstant(int id) {
    if (auto it = half_constant.find(id); it != half_constant.end()) return it->second;
    const PlanValue from = plan.values[static_cast<size_t>(id)];
    const Tensor& f32 = *from.constant;
    ITKIT_ASSIGN_OR_RETURN(Tensor f16, Tensor::Allocate(DType::kF16, f32.shape()));
    const float* src = f32.data<float>();
    uint16_t* dst = f16.data<uint16_t>();
    for (int64_t i = 0; i < f32.size(); ++i) {
      if (std::isfinite(src[i]) && std::fabs(src[i]) > 65504.0f) return half_constant[id] = -1;
      dst[i] = FloatToHalf(src[i]);
    }
    plan.owned_constants.push_back(std::move(f16));
    PlanValue v;
    v.name = from.name + "/f16";
    v.kind = PlanValue::Kind::kConstant;
    v.dtype = DType::kF16;
    v.shape = from.shape;
    v.backend = cpu;
    v.constant = &plan.owned_constants.back();
    v.half_of_f32 = true;
    return half_constant[id] = AddValue(std::move(v));
  }

  // The f16-storage form of a node's signature: f32 data inputs and outputs become
  // f16 (constants converted here). False when a constant does not fit f16.
  struct HalfForm {
    NodeSignature sig;
    std::vector<int> inputs;     // value ids, constants replaced by their f16 copies
    std::vector<DType> dtypes;   // what each input must be stored as
  };
  Result<bool> MakeHalfForm(const NodeSignature& sig, const std::vector<int>& input_ids, HalfForm& out) {
    out.sig = sig;
    out.inputs = input_ids;
    out.dtypes.assign(input_ids.size(), DType::kUndefined);
    bool any = false;
    for (size_t i = 0; i < input_ids.size(); ++i) {
      if (input_ids[i] < 0) continue;
      out.dtypes[i] = sig.inputs[i].dtype;
      if (sig.inputs[i].dtype != DType::kF32 || !StoresInputAsHalf(*sig.node, i)) continue;
      const PlanValue& v = plan.values[static_cast<size_t>(input_ids[i])];
      if (v.kind == PlanValue::Kind::kConstant && v.backend == cpu && v.constant) {
        ITKIT_ASSIGN_OR_RETURN(int half, HalfConstant(input_ids[i]));
        if (half < 0) return false;
        out.inputs[i] = half;
        out.sig.inputs[i].constant = plan.values[static_cast<size_t>(half)].constant;
      } else {
        if (!v.half_of_f32 && !ConvertsInputsToHalf(*sig.node)) return false;
        out.sig.inputs[i].constant = nullptr;
      }
      out.sig.inputs[i].dtype = DType::kF16;
      out.dtypes[i] = DType::kF16;
      any = true;
    }
    for (ValueDesc& o : out.sig.outputs) {
      if (o.dtype != DType::kF32) continue;
      o.dtype = DType::kF16;
      any = true;
    }
    return any;
  }

  // One way to run a node: its signature, the value ids it reads and how each must be
  // stored (dtype, layout).
  struct Form {
    NodeSignature sig;
    std::vector<int> inputs;
    std::vector<DType> dtypes;
    std::vector<bool> channels_last;
  };

  // `f` with the channels-last storage `layout` names (itkit/channels_last.h). False
  // when it does not apply: no input is channels-last yet (except for convolutions,
  // which convert anyway), a data input is a constant, or the node writes a graph
  // output (only convolutions write it row-major from channels-last inputs).
  bool MakeChannelsLastForm(const ChannelsLastForm& layout, Form& f) const {
    bool any_channels_last = false;
    for (size_t i = 0; i < f.inputs.size(); ++i) {
      if (!layout.inputs[i]) continue;
      if (f.inputs[i] < 0) return false;
      const PlanValue& v = plan.values[static_cast<size_t>(f.inputs[i])];
      if (v.kind == PlanValue::Kind::kConstant) return false;
      any_channels_last = any_channels_last || v.channels_last;
    }
    if (!any_channels_last && !layout.converts_inputs) return false;
    const bool graph_output = ProducesGraphOutput(*f.sig.node);
    if (graph_output && !layout.converts_inputs) return false;
    for (size_t i = 0; i < f.inputs.size(); ++i) {
      f.sig.inputs[i].channels_last = layout.inputs[i];
      f.channels_last[i] = layout.inputs[i];
    }
    for (size_t o = 0; o < f.sig.outputs.size(); ++o) f.sig.outputs[o].channels_last = layout.outputs[o] && !graph_output;
    return true;
  }

  // Runs a node whose inputs are all known on the CPU now and keeps its outputs as constants.
  Status Fold(const Node& node, const NodeSignature& sig, const std::vector<int>& input_ids) {
    ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> kernel, (*in.backends)[cpu]->CreateKernel(sig));
    std::vector<Tensor> inputs(input_ids.size());
    KernelContext ctx;
    for (size_t i = 0; i < input_ids.size(); ++i) {
      if (input_ids[i] < 0) {
        ctx.inputs.push_back(nullptr);
        continue;
      }
      const PlanValue& v = plan.values[static_cast<size_t>(input_ids[i])];
      // Shape/Size read only the shape of a non-constant input.
      inputs[i] = v.constant ? *v.constant : Tensor::View(v.dtype, v.shape, nullptr);
      ctx.inputs.push_back(&inputs[i]);
    }
    std::vector<Tensor> outputs;
    for (const ValueDesc& d : sig.outputs) {
      ITKIT_ASSIGN_OR_RETURN(Tensor t, Tensor::Allocate(d.dtype == DType::kUndefined ? DType::kU8 : d.dtype, d.shape));
      outputs.push_back(std::move(t));
    }
    for (Tensor& t : outputs) ctx.outputs.push_back(&t);
    std::vector<uint8_t> workspace(kernel->workspace_bytes());
    ctx.pool = in.pool;
    ctx.workspace = workspace.data();
    ctx.workspace_bytes = workspace.size();
    ITKIT_RETURN_IF_ERROR(kernel->Run(ctx).WithContext("evaluating at planning time"));
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      if (node.outputs[o].empty()) continue;
      plan.owned_constants.push_back(std::move(outputs[o]));
      PlanValue v;
      v.name = node.outputs[o];
      v.kind = PlanValue::Kind::kConstant;
      v.dtype = plan.owned_constants.back().dtype();
      v.shape = plan.owned_constants.back().shape();
      v.backend = cpu;
      v.constant = &plan.owned_constants.back();
      const std::string value_name = v.name;  // AddValue moves v
      id_of[value_name] = AddValue(std::move(v));
    }
    return Status::Ok();
  }

  // Which backend holds a graph input: the CPU for host tensors, else the first
  // backend whose device kind matches.
  Result<size_t> HomeOf(const std::string& name, const Tensor& t) const {
    if (t.device() == DeviceKind::kCpu) return cpu;
    for (size_t b = 0; b < in.backends->size(); ++b)
      if ((*in.backends)[b]->device() == t.device()) return b;
    return InvalidArgument("graph input '", name, "' is in ", t.device() == DeviceKind::kCuda ? "CUDA" : "device",
                           " memory, but the session has no backend for that device");
  }

  // A copy of device graph input `id` into an arena value on the same backend.
  int StageIn(int id) {
    const PlanValue from = plan.values[static_cast<size_t>(id)];
    PlanValue staged;
    staged.name = from.name + "@staged";
    staged.dtype = from.dtype;
    staged.shape = from.shape;
    staged.backend = from.backend;
    PlanStep step;
    step.backend = from.backend;
    step.copy_from_backend = from.backend;
    step.inputs = {id};
    const int staged_id = AddValue(std::move(staged));
    step.outputs = {staged_id};
    plan.steps.push_back(std::move(step));
    return staged_id;
  }

  // The id of `id`'s value as seen from `backend`, inserting an upload or a copy step.
  Result<int> OnBackend(int id, size_t backend) {
    const PlanValue& v = plan.values[static_cast<size_t>(id)];
    if (v.backend == backend) return id;
    auto key = std::make_pair(id, backend);
    if (auto it = device_copy.find(key); it != device_copy.end()) return it->second;
    Backend& target = *(*in.backends)[backend];
    PlanValue copy;
    copy.name = v.name + "@" + std::string(target.name());
    copy.dtype = v.dtype;
    copy.shape = v.shape;
    copy.backend = backend;
    copy.channels_last = v.channels_last;
    copy.half_of_f32 = v.half_of_f32;
    if (v.kind == PlanValue::Kind::kConstant && v.backend == cpu) {
      // Weights are uploaded once per plan, not per run.
      ITKIT_ASSIGN_OR_RETURN(DeviceBuffer buf, target.Allocate(v.constant->bytes()));
      Tensor dev = Tensor::Wrap(v.dtype, v.shape, buf.owner, buf.data, target.device());
      ITKIT_RETURN_IF_ERROR(target.CopyFromHost(*v.constant, dev));
      plan.owned_constants.push_back(std::move(dev));
      copy.kind = PlanValue::Kind::kConstant;
      copy.constant = &plan.owned_constants.back();
    } else {
      PlanStep step;
      step.backend = backend;
      step.copy_from_backend = v.backend;
      step.inputs = {id};
      const int copy_id = AddValue(std::move(copy));
      step.outputs = {copy_id};
      plan.steps.push_back(std::move(step));
      device_copy[key] = copy_id;
      return copy_id;
    }
    const int copy_id = AddValue(std::move(copy));
    device_copy[key] = copy_id;
    return copy_id;
  }

  Status AddNode(const Node& node) {
    std::vector<int> input_ids;
    std::vector<ValueDesc> descs(node.inputs.size());
    std::vector<const ValueDesc*> desc_ptrs(node.inputs.size(), nullptr);
    bool all_known = true;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (node.inputs[i].empty()) {
        input_ids.push_back(-1);
        continue;
      }
      auto it = id_of.find(node.inputs[i]);
      if (it == id_of.end()) return Internal(node.Describe(), ": input '", node.inputs[i], "' has no value");
      input_ids.push_back(it->second);
      descs[i] = DescOf(it->second);
      desc_ptrs[i] = &descs[i];
      all_known = all_known && descs[i].constant != nullptr;
    }
    ShapeContext sctx(node, desc_ptrs, in.graph->onnx_opset());
    ITKIT_RETURN_IF_ERROR(InferNodeShapes(sctx));
    NodeSignature sig;
    sig.node = &node;
    sig.inputs = descs;
    sig.outputs = sctx.outputs();
    sig.opset = in.graph->onnx_opset();
    for (size_t o = 0; o < sig.outputs.size(); ++o) {
      if (node.outputs[o].empty()) continue;
      auto count = CheckedElementCount(sig.outputs[o].shape);
      if (!count.ok()) return count.status().WithContext(node.Describe() + " output '" + node.outputs[o] + "'");
      if (*count > kMaxTensorBytes / 8)
        return ResourceExhausted(node.Describe(), ": output '", node.outputs[o], "' of shape ",
                                 ShapeToString(sig.outputs[o].shape), " is too large");
    }

    int64_t out_elements = 0;
    for (const ValueDesc& d : sig.outputs) out_elements += ElementCount(d.shape);
    const bool shape_only = IsOnnxDomain(node.domain) && (node.op_type == "Shape" || node.op_type == "Size");
    if ((all_known || shape_only) && out_elements <= kMaxFoldElements) return Fold(node, sig, input_ids);

    // Placement: the first backend that supports the node and compiles a kernel for
    // it; a device backend's Unsupported falls through to the next, the CPU last. A
    // backend that prefers f16 storage is offered the f16 form first, one that
    // prefers channels-last the channels-last variant of each form first.
    size_t chosen = cpu;
    std::unique_ptr<OpKernel> kernel;
    Form chosen_form;
    // A graph output stays f32 from f32 math, except a convolution's (the network's
    // head): its f16 form reads the f16 activations as they are and its small result is
    // cast to f32 after, as under torch.autocast, instead of casting its (often much
    // larger) input up to f32 first.
    const bool half_candidate =
        StoresHalfSafely(node) && (!ProducesGraphOutput(node) || ConvertsInputsToHalf(node));
    ChannelsLastForm layout;
    const bool layout_candidate = ChannelsLastCandidate(sig, &layout);
    for (size_t b = 0; b < in.backends->size() && !kernel; ++b) {
      Backend& backend = *(*in.backends)[b];
      std::vector<Form> forms;
      Form plain{sig, input_ids, {}, std::vector<bool>(input_ids.size(), false)};
      for (size_t i = 0; i < input_ids.size(); ++i) plain.dtypes.push_back(sig.inputs[i].dtype);
      if (half_candidate && backend.prefers_half_storage()) {
        HalfForm half;
        ITKIT_ASSIGN_OR_RETURN(bool try_half, MakeHalfForm(sig, input_ids, half));
        if (try_half) forms.push_back(Form{half.sig, half.inputs, half.dtypes, plain.channels_last});
      }
      forms.push_back(plain);
      if (layout_candidate && backend.prefers_channels_last()) {
        std::vector<Form> with_layout;
        for (const Form& f : forms) {
          Form cl = f;
          if (MakeChannelsLastForm(layout, cl)) with_layout.push_back(std::move(cl));
          with_layout.push_back(f);
        }
        forms = std::move(with_layout);
      }
      for (size_t k = 0; k < forms.size(); ++k) {
        const Form& candidate = forms[k];
        const bool last = k + 1 == forms.size();
        std::string reason;
        if (!backend.Supports(candidate.sig, &reason)) {
          if (b != cpu) LogDebug(backend.name(), " does not run ", node.Describe(), ": ", reason);
          continue;
        }
        auto created = backend.CreateKernel(candidate.sig);
        if (!created.ok()) {
          const bool fatal = last && (b == cpu || created.status().code() != StatusCode::kUnsupported);
          if (fatal) return created.status();
          LogDebug(backend.name(), " declined ", node.Describe(), ": ", created.status().message());
          continue;
        }
        kernel = std::move(created).value();
        chosen = b;
        chosen_form = candidate;
        break;
      }
    }
    if (!kernel) return Unsupported(node.Describe(), ": no backend can run it");
    PlanStep step;
    step.node = &node;
    step.backend = chosen;
    step.kernel = std::move(kernel);
    for (size_t i = 0; i < chosen_form.inputs.size(); ++i) {
      if (chosen_form.inputs[i] < 0) {
        step.inputs.push_back(-1);
        continue;
      }
      // A constant the kernel copied for itself at creation (prepacked weights) is not
      // uploaded for it: the step sees it as omitted.
      const PlanValue& source = plan.values[static_cast<size_t>(chosen_form.inputs[i])];
      if (source.kind == PlanValue::Kind::kConstant && !step.kernel->reads_input_at_run(i)) {
        step.inputs.push_back(-1);
        continue;
      }
      ITKIT_ASSIGN_OR_RETURN(int local, Prepare(chosen_form.inputs[i], chosen_form.dtypes[i], chosen,
                                                chosen_form.channels_last[i]));
      step.inputs.push_back(local);
    }
    step.workspace_bytes = step.kernel->workspace_bytes();
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      PlanValue v;
      v.name = node.outputs[o];
      v.dtype = chosen_form.sig.outputs[o].dtype;
      v.half_of_f32 = v.dtype == DType::kF16 && sig.outputs[o].dtype == DType::kF32;
      v.channels_last = chosen_form.sig.outputs[o].channels_last;
      v.shape = chosen_form.sig.outputs[o].shape;
      v.backend = chosen;
      v.bytes = static_cast<size_t>(ElementCount(v.shape)) * DTypeSize(v.dtype);
      const int id = AddValue(std::move(v));
      step.outputs.push_back(id);
      if (!node.outputs[o].empty()) id_of[node.outputs[o]] = id;
    }
    plan.steps.push_back(std::move(step));
    return Status::Ok();
  }
};

}  // namespace

namespace {

// Maximal runs of consecutive kernel steps on one backend that can record them
// (copies, which involve host work, end a run).
void FindRecordableSegments(Plan& plan, const std::vector<std::shared_ptr<Backend>>& backends) {
  for (size_t s = 0; s < plan.steps.size();) {
    const size_t backend = plan.steps[s].backend;
    if (!plan.steps[s].node || !backends[backend]->CanRecord()) {
      ++s;
      continue;
    }
    size_t end = s + 1;
    while (end < plan.steps.size() && plan.steps[end].node && plan.steps[end].backend == backend) ++end;
    if (end - s >= 2) {
      Plan::Segment seg;
      seg.first_step = s;
      seg.end_step = end;
      seg.backend = backend;
      plan.segments.push_back(std::move(seg));
    }
    s = end;
  }
}

}  // namespace

bool IsShapeValuedInput(const Tensor& t) {
  if (t.device() != DeviceKind::kCpu) return false;  // device data is read only by kernels
  const int64_t count = ElementCount(t.shape());
  if (count > 0 && t.raw() == nullptr) return false;  // a shape-only probe (StatsFor)
  const bool small_ints = (t.dtype() == DType::kI64 || t.dtype() == DType::kI32) && count <= kMaxShapeInputElements;
  // Scalars and tiny vectors of any dtype: Range's start/limit/delta, Resize's scales.
  return small_ints || count <= 8;
}

std::vector<int> ShareInPlaceBuffers(Plan& plan) {
  std::vector<int> root(plan.values.size());
  for (size_t i = 0; i < root.size(); ++i) root[i] = static_cast<int>(i);
  for (size_t s = 0; s < plan.steps.size(); ++s) {
    PlanStep& step = plan.steps[s];
    const int k = step.kernel ? step.kernel->in_place_input() : -1;
    if (k < 0 || static_cast<size_t>(k) >= step.inputs.size() || step.outputs.empty()) continue;
    const int in_id = step.inputs[static_cast<size_t>(k)], out_id = step.outputs[0];
    if (in_id < 0 || out_id < 0) continue;
    const PlanValue& in = plan.values[static_cast<size_t>(in_id)];
    const PlanValue& out = plan.values[static_cast<size_t>(out_id)];
    if (in.kind != PlanValue::Kind::kIntermediate || out.kind != PlanValue::Kind::kIntermediate) continue;
    if (in.backend != step.backend || out.backend != step.backend) continue;
    // The input dies here (device outputs kept past the run end after the last step).
    if (in.last_step != static_cast<int>(s) || in.first_step < 0) continue;
    if (in.bytes != out.bytes || in.dtype != out.dtype || in.channels_last != out.channels_last) continue;
    // Read through no other slot of this step (the kernel reads those unaliased).
    if (std::count(step.inputs.begin(), step.inputs.end(), in_id) != 1) continue;
    root[static_cast<size_t>(out_id)] = root[static_cast<size_t>(in_id)];
    ++plan.stats.in_place_values;
  }
  return root;
}

size_t AssignArenaOffsets(std::vector<BufferLifetime>& buffers, size_t alignment) {
  std::vector<size_t> order(buffers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return buffers[a].bytes > buffers[b].bytes; });
  std::vector<size_t> placed;
  size_t arena = 0;
  for (size_t i : order) {
    BufferLifetime& buf = buffers[i];
    const size_t size = AlignUp(std::max<size_t>(buf.bytes, 1), alignment);
    // Intervals of already placed buffers that are alive at the same time, by offset.
    std::vector<std::pair<size_t, size_t>> busy;
    for (size_t j : placed) {
      const BufferLifetime& other = buffers[j];
      if (other.last < buf.first || buf.last < other.first) continue;
      busy.emplace_back(other.offset, other.offset + AlignUp(std::max<size_t>(other.bytes, 1), alignment));
    }
    std::sort(busy.begin(), busy.end());
    // Best fit: the smallest gap that holds the buffer, else the end.
    size_t best = SIZE_MAX, best_gap = SIZE_MAX, cursor = 0;
    for (const auto& [begin, end] : busy) {
      if (begin > cursor && begin - cursor >= size && begin - cursor < best_gap) {
        best = cursor;
        best_gap = begin - cursor;
      }
      cursor = std::max(cursor, end);
    }
    buf.offset = best != SIZE_MAX ? best : cursor;
    arena = std::max(arena, buf.offset + size);
    placed.push_back(i);
  }
  return arena;
}

Result<std::unique_ptr<Plan>> BuildPlan(const PlanInputs& in, const std::vector<const Tensor*>& inputs) {
  const Graph& graph = *in.graph;
  auto plan = std::make_unique<Plan>();
  Builder b{in, *plan, {}, {}, in.backends->size() - 1};

  for (const auto& [name, tensor] : graph.initializers) {
    PlanValue v;
    v.name = name;
    v.kind = PlanValue::Kind::kConstant;
    v.dtype = tensor.dtype();
    v.shape = tensor.shape();
    v.backend = b.cpu;
    v.constant = &tensor;
    const int id = b.AddValue(std::move(v));
    b.id_of[name] = id;
  }
  if (inputs.size() != graph.inputs.size())
    return InvalidArgument("the model has ", graph.inputs.size(), " inputs, ", inputs.size(), " were given");
  std::map<std::string, int64_t> symbols;
  for (size_t i = 0; i < graph.inputs.size(); ++i) {
    ITKIT_RETURN_IF_ERROR(CheckInput(graph.inputs[i], *inputs[i], symbols));
    ITKIT_ASSIGN_OR_RETURN(const size_t home, b.HomeOf(graph.inputs[i].name, *inputs[i]));
    PlanValue v;
    v.name = graph.inputs[i].name;
    v.kind = PlanValue::Kind::kGraphInput;
    v.dtype = inputs[i]->dtype();
    v.shape = inputs[i]->shape();
    v.backend = home;
    v.graph_input_index = static_cast<int>(i);
    if (IsShapeValuedInput(*inputs[i])) {
      ITKIT_ASSIGN_OR_RETURN(Tensor copy, inputs[i]->Clone());
      plan->owned_constants.push_back(std::move(copy));
      v.kind = PlanValue::Kind::kConstant;
      v.constant = &plan->owned_constants.back();
    }
    const int id = b.AddValue(std::move(v));
    plan->input_ids.push_back(id);
    // An input handed over in device memory is copied into the plan's arena first:
    // its address changes between runs, and recorded steps must not read it directly.
    b.id_of[graph.inputs[i].name] = home == b.cpu ? id : b.StageIn(id);
  }
  for (const Node& node : graph.nodes) ITKIT_RETURN_IF_ERROR(b.AddNode(node));

  // Graph outputs come back on the host, in fresh tensors owned by the caller, in the
  // graph's dtypes; with outputs_on_device, those a device produced stay in its arena.
  std::vector<int> device_outputs;
  for (size_t o = 0; o < graph.outputs.size(); ++o) {
    auto it = b.id_of.find(graph.outputs[o].name);
    if (it == b.id_of.end()) return InvalidArgument("graph output '", graph.outputs[o].name, "' is never produced");
    int id = it->second;
    if (plan->values[static_cast<size_t>(id)].channels_last) {
      ITKIT_ASSIGN_OR_RETURN(id, b.LayoutOn(id, false));
    }
    if (plan->values[static_cast<size_t>(id)].half_of_f32) {
      ITKIT_ASSIGN_OR_RETURN(id, b.CastOn(id, DType::kF32));
    }
    PlanValue& v = plan->values[static_cast<size_t>(id)];
    if (v.kind == PlanValue::Kind::kIntermediate && v.graph_output_index < 0 && v.backend == b.cpu) {
      v.kind = PlanValue::Kind::kGraphOutput;
      v.graph_output_index = static_cast<int>(o);
    } else if (v.kind == PlanValue::Kind::kIntermediate && v.backend != b.cpu && in.outputs_on_device) {
      device_outputs.push_back(id);  // stays an arena value, alive to the end of the run
    } else if (v.kind == PlanValue::Kind::kIntermediate && v.backend != b.cpu) {
      const int device = static_cast<int>(v.backend);  // before OnBackend: it adds values
      ITKIT_ASSIGN_OR_RETURN(int host_id, b.OnBackend(id, b.cpu));
      PlanValue& hv = plan->values[static_cast<size_t>(host_id)];
      if (hv.graph_output_index < 0) {
        hv.kind = PlanValue::Kind::kGraphOutput;
        hv.graph_output_index = static_cast<int>(o);
        hv.downloaded_from = device;
      }
      id = host_id;
    }
    plan->output_ids.push_back(id);
  }

  // Lifetimes, then one arena per backend.
  for (size_t s = 0; s < plan->steps.size(); ++s) {
    const int step = static_cast<int>(s);
    for (int id : plan->steps[s].outputs) {
      if (id < 0) continue;
      PlanValue& v = plan->values[static_cast<size_t>(id)];
      v.bytes = static_cast<size_t>(ElementCount(v.shape)) * DTypeSize(v.dtype);
      if (v.first_step < 0) v.first_step = step;
      v.last_step = std::max(v.last_step, step);
    }
    for (int id : plan->steps[s].inputs)
      if (id >= 0) plan->values[static_cast<size_t>(id)].last_step = step;
  }
  for (int id : device_outputs) plan->values[static_cast<size_t>(id)].last_step = static_cast<int>(plan->steps.size());
  // Outputs written over an input that dies at their step share its buffer.
  const std::vector<int> buffer_of = ShareInPlaceBuffers(*plan);
  const size_t num_backends = in.backends->size();
  plan->arenas.resize(num_backends);
  plan->arena_bytes.assign(num_backends, 0);
  PlanStats& stats = plan->stats;
  for (size_t backend = 0; backend < num_backends; ++backend) {
    std::vector<BufferLifetime> buffers;
    std::vector<std::pair<int, int>> owners;  // (sharing group's root value or -1, step index for workspace)
    std::vector<int> buffer_index(plan->values.size(), -1);  // per sharing group's first value
    for (size_t id = 0; id < plan->values.size(); ++id) {
      const PlanValue& v = plan->values[id];
      if (v.backend != backend || v.kind != PlanValue::Kind::kIntermediate || v.first_step < 0) continue;
      stats.naive_bytes += v.bytes;
      const size_t root = static_cast<size_t>(buffer_of[id]);
      if (buffer_index[root] >= 0) {  // a later value of a sharing group: widen its buffer
        BufferLifetime& shared = buffers[static_cast<size_t>(buffer_index[root])];
        shared.bytes = std::max(shared.bytes, v.bytes);
        shared.first = std::min(shared.first, v.first_step);
        shared.last = std::max(shared.last, v.last_step);
        continue;
      }
      buffer_index[root] = static_cast<int>(buffers.size());
      buffers.push_back({v.bytes, v.first_step, v.last_step});
      owners.emplace_back(static_cast<int>(root), -1);
    }
    for (size_t s = 0; s < plan->steps.size(); ++s) {
      const PlanStep& step = plan->steps[s];
      if (step.backend != backend || step.workspace_bytes == 0) continue;
      buffers.push_back({step.workspace_bytes, static_cast<int>(s), static_cast<int>(s)});
      owners.emplace_back(-1, static_cast<int>(s));
    }
    if (buffers.empty()) continue;
    {
      // The same placement without step workspaces: what the values alone need, which
      // CPU emulations of a device plan (whose workspaces differ) can report too.
      std::vector<BufferLifetime> values_only;
      for (size_t i = 0; i < buffers.size(); ++i)
        if (owners[i].first >= 0) values_only.push_back(buffers[i]);
      stats.value_arena_bytes += values_only.empty() ? 0 : AssignArenaOffsets(values_only);
      // Where the values' memory peaks: live bytes per step by a sweep over lifetimes.
      std::vector<int64_t> delta(plan->steps.size() + 2, 0);
      for (const BufferLifetime& b : values_only) {
        delta[static_cast<size_t>(b.first)] += static_cast<int64_t>(b.bytes);
        delta[static_cast<size_t>(b.last) + 1] -= static_cast<int64_t>(b.bytes);
      }
      int64_t live = 0;
      for (size_t s = 0; s < plan->steps.size(); ++s) {
        live += delta[s];
        if (static_cast<size_t>(live) <= stats.peak_live_bytes) continue;
        stats.peak_live_bytes = static_cast<size_t>(live);
        const PlanStep& at = plan->steps[s];
        stats.peak_step = StrCat("step ", s, " ", at.node ? at.node->Describe() : std::string("(copy)"));
      }
    }
    const size_t arena = AssignArenaOffsets(buffers);
    for (size_t i = 0; i < buffers.size(); ++i)
      if (owners[i].first < 0) plan->steps[static_cast<size_t>(owners[i].second)].workspace_offset = buffers[i].offset;
    for (size_t id = 0; id < plan->values.size(); ++id) {
      const int b = buffer_index[static_cast<size_t>(buffer_of[id])];
      if (b >= 0 && plan->values[id].backend == backend && plan->values[id].kind == PlanValue::Kind::kIntermediate)
        plan->values[id].arena_offset = buffers[static_cast<size_t>(b)].offset;
    }
    ITKIT_ASSIGN_OR_RETURN(plan->arenas[backend], (*in.backends)[backend]->Allocate(arena));
    plan->arena_bytes[backend] = arena;
    stats.arena_bytes += arena;
    stats.arena_bytes_per_backend[std::string((*in.backends)[backend]->name())] += arena;
  }
  for (const auto& [name, tensor] : graph.initializers) stats.constant_bytes += tensor.bytes();
  for (const Tensor& t : plan->owned_constants) stats.constant_bytes += t.bytes();
  stats.num_steps = plan->steps.size();
  stats.storage_casts = plan->owned_nodes.size() - stats.layout_transposes;
  for (const PlanValue& v : plan->values) {
    if (v.half_of_f32 && v.kind != PlanValue::Kind::kConstant) ++stats.f16_values;
    if (v.channels_last) ++stats.channels_last_values;
  }
  FindRecordableSegments(*plan, *in.backends);
  for (const PlanStep& step : plan->steps)
    ++stats.steps_per_backend[std::string((*in.backends)[step.backend]->name())];
  return plan;
}

}  // namespace itkit
