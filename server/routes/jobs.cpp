// Asynchronous inference for long runs and progress bars: POST /api/jobs
// answers 202 with an id as soon as the upload is in; the client polls
// GET /api/jobs/<id> and fetches /api/jobs/<id>/result.
#include "server/routes/routes.h"

namespace itkit::server {

namespace {

Response SubmitJob(Request& req, App& app) {
  HeavySlot slot(app);
  if (!slot.ok()) return Response::Error(MakeError(503, "server busy with uploads and inferences; retry later", 5));
  auto input = PrepareInference(req, app);
  if (!input.ok()) return Response::Error(input.error());
  std::string model_name = input->model->name;
  auto job = app.jobs->Submit(std::move(input).value());
  if (!job.ok()) return Response::Error(job.error());
  const std::string& id = job.value()->id();
  nlohmann::json j = job.value()->ToJson(false);
  j["status_url"] = "/api/jobs/" + id;
  j["result_url"] = "/api/jobs/" + id + "/result";
  Response r = Response::Json(202, j);
  r.AddHeader("Location", "/api/jobs/" + id);
  r.log_model = model_name;
  return r;
}

Response JobStatus(Request& req, App& app) {
  auto job = app.jobs->Find(req.params["id"]);
  if (!job) return Response::Error(404, "job " + req.params["id"] + " not found (unknown, deleted or expired)");
  Response r = Response::Json(200, job->ToJson(true));
  r.log_model = job->input().model->name;
  return r;
}

Response JobResult(Request& req, App& app) {
  auto job = app.jobs->Find(req.params["id"]);
  if (!job) return Response::Error(404, "job " + req.params["id"] + " not found (unknown, deleted or expired)");
  auto result = job->Result();
  Response r;
  if (!result.ok()) {
    // The job's own error explains why there is no result; the request for
    // the result itself conflicts with the job's state.
    std::string state = JobStateName(job->state());
    r = Response::Error(409, state == "queued" || state == "running"
                                 ? result.error().message
                                 : "job " + job->id() + " is " + state + ": " + result.error().message);
  } else {
    r = Response::Download(result.value()->path(), job->input().result_filename, result.value());
    r.server_timing = job->ServerTiming();
  }
  r.log_model = job->input().model->name;
  return r;
}

Response ListJobs(App& app) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& job : app.jobs->List()) list.push_back(job->ToJson(true));
  return Response::Json(200, {{"jobs", list}, {"count", list.size()}});
}

}  // namespace

void RegisterJobRoutes(Router& router, App& app) {
  router.Add("POST", "/api/jobs", [&app](Request& req) { return SubmitJob(req, app); });
  router.Add("GET", "/api/jobs", [&app](Request&) { return ListJobs(app); });
  router.Add("GET", "/api/jobs/{id}", [&app](Request& req) { return JobStatus(req, app); });
  router.Add("GET", "/api/jobs/{id}/result", [&app](Request& req) { return JobResult(req, app); });
  router.Add("DELETE", "/api/jobs/{id}", [&app](Request& req) {
    auto r = app.jobs->Cancel(req.params["id"]);
    if (!r.ok()) return Response::Error(r.error());
    return Response::Json(200, r.value());
  });
}

}  // namespace itkit::server
