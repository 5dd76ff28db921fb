#include "server/job_queue.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/tests/fake_model.h"

namespace itkit::server {
namespace {

namespace fs = std::filesystem;
using testing::FakeModel;

class JobQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("itkit-jobs-" + RandomHex(4));
    fs::create_directories(dir_);
    model_ = FakeModel::Make();
    entry_ = std::make_shared<ModelEntry>(model_, model_->info());
    entry_->name = "fake";
  }
  void TearDown() override {
    queue_.reset();
    fs::remove_all(dir_);
  }
  void MakeQueue(JobQueue::Options o) {
    o.temp_dir = dir_.string();
    queue_ = std::make_unique<JobQueue>(o, &metrics_);
  }
  JobInput Input(bool sync = false) {
    JobInput in;
    in.model = entry_;
    std::string path = UniqueTempPath(dir_.string(), "in", ".nii.gz");
    std::ofstream(path) << "IMAGE";
    in.image = std::make_shared<TempFile>(path);
    in.sync = sync;
    return in;
  }
  std::shared_ptr<Job> Submit(bool sync = false) {
    auto j = queue_->Submit(Input(sync));
    EXPECT_TRUE(j.ok());
    return j.ok() ? j.value() : nullptr;
  }
  bool WaitFor(Job& job, JobState state) {
    for (int i = 0; i < 500 && job.state() != state; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return job.state() == state;
  }
  // Waits a little for a worker thread to drop its last reference.
  size_t FilesInDir(size_t expect) const {
    size_t n = 0;
    for (int i = 0; i < 100; ++i) {
      n = 0;
      for (auto& e : fs::directory_iterator(dir_)) n += e.is_regular_file();
      if (n == expect) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return n;
  }

  fs::path dir_;
  Metrics metrics_;
  std::shared_ptr<FakeModel> model_;
  std::shared_ptr<ModelEntry> entry_;
  std::unique_ptr<JobQueue> queue_;
};

TEST_F(JobQueueTest, RunsJobsAndKeepsResults) {
  MakeQueue({});
  auto job = Submit();
  ASSERT_TRUE(queue_->Wait(*job, Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(job->state(), JobState::kDone);
  auto result = job->Result();
  ASSERT_TRUE(result.ok());
  std::ifstream in(result.value()->path());
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "LABELS:IMAGE");
  nlohmann::json j = job->ToJson(true);
  EXPECT_EQ(j["state"], "done");
  EXPECT_EQ(j["windows_total"], 4);
  EXPECT_EQ(j["result_url"], "/api/jobs/" + job->id() + "/result");
  EXPECT_NE(job->ServerTiming().find("windows;dur="), std::string::npos);
  EXPECT_EQ(FilesInDir(1), 1u);  // the upload is gone, the result stays
  EXPECT_EQ(queue_->Find(job->id()), job);
  auto del = queue_->Cancel(job->id());  // deleting a finished job
  ASSERT_TRUE(del.ok());
  EXPECT_EQ(del.value()["state"], "deleted");
  result = MakeError(500, "drop");
  job.reset();
  EXPECT_EQ(FilesInDir(0), 0u);
}

TEST_F(JobQueueTest, FullQueueAnswers503WithRetryAfter) {
  JobQueue::Options o;
  o.capacity_per_device = 2;
  MakeQueue(o);
  model_->window_ms = 50;
  auto running = Submit();
  ASSERT_TRUE(WaitFor(*running, JobState::kRunning));
  Submit();
  Submit();
  EXPECT_FALSE(queue_->CheckCapacity("cpu").ok());
  auto rejected = queue_->Submit(Input());
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.error().http_status, 503);
  EXPECT_GE(rejected.error().retry_after_s, 1);
  EXPECT_TRUE(queue_->CheckCapacity("cuda").ok());  // queues are per device
  model_->window_ms = 0;
}

TEST_F(JobQueueTest, CancelQueuedRunningAndTwice) {
  MakeQueue({});
  model_->window_ms = 100;
  model_->windows = 100;
  auto running = Submit();
  auto queued = Submit();
  ASSERT_TRUE(WaitFor(*running, JobState::kRunning));
  auto c1 = queue_->Cancel(queued->id());
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1.value()["state"], "cancelled");
  EXPECT_EQ(queued->state(), JobState::kCancelled);
  EXPECT_EQ(queue_->Cancel(queued->id()).error().http_status, 409);
  auto c2 = queue_->Cancel(running->id());
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2.value()["state"], "cancelling");
  EXPECT_EQ(queue_->Cancel(running->id()).error().http_status, 409);
  ASSERT_TRUE(queue_->Wait(*running, Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(running->state(), JobState::kCancelled);
  EXPECT_EQ(running->Result().error().http_status, 409);
  EXPECT_EQ(queue_->Cancel("nope").error().http_status, 404);
}

TEST_F(JobQueueTest, TimeLimitCancelsWith504) {
  JobQueue::Options o;
  o.time_limit_s = 0.3;
  MakeQueue(o);
  model_->window_ms = 100;
  model_->windows = 1000;
  auto job = Submit();
  ASSERT_TRUE(queue_->Wait(*job, Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(job->state(), JobState::kCancelled);
  EXPECT_EQ(job->Result().error().http_status, 504);
}

TEST_F(JobQueueTest, FailuresAndUnloadedModels) {
  MakeQueue({});
  model_->fail = true;
  auto job = Submit();
  ASSERT_TRUE(queue_->Wait(*job, Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(job->state(), JobState::kFailed);
  EXPECT_EQ(job->Result().error().http_status, 400);
  model_->fail = false;
  entry_->Unload(std::chrono::milliseconds(0));
  auto late = Submit();
  ASSERT_TRUE(queue_->Wait(*late, Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(late->state(), JobState::kFailed);
  EXPECT_EQ(late->Result().error().http_status, 409);
}

TEST_F(JobQueueTest, ExpiryAndSyncJobsAreHidden) {
  JobQueue::Options o;
  o.ttl_s = 0.05;
  MakeQueue(o);
  auto job = Submit();
  auto sync = Submit(/*sync=*/true);
  ASSERT_TRUE(queue_->Wait(*job, Clock::now() + std::chrono::seconds(5)));
  ASSERT_TRUE(queue_->Wait(*sync, Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(queue_->Find(sync->id()), nullptr);
  EXPECT_EQ(queue_->List().size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  queue_->Housekeep();
  EXPECT_EQ(queue_->Find(job->id()), nullptr);
  EXPECT_EQ(queue_->GetStats().by_state["done"], 1);  // the sync job stays until forgotten
  queue_->Forget(sync->id());
  EXPECT_EQ(queue_->GetStats().by_state["done"], 0);
}

TEST_F(JobQueueTest, ShutdownCancelsQueuedAndWaitsForRunning) {
  MakeQueue({});
  model_->window_ms = 20;
  model_->windows = 5;
  auto running = Submit();
  auto queued = Submit();
  ASSERT_TRUE(WaitFor(*running, JobState::kRunning));
  queue_->Shutdown(std::chrono::seconds(5));
  EXPECT_EQ(running->state(), JobState::kDone);
  EXPECT_EQ(queued->state(), JobState::kCancelled);
  EXPECT_EQ(queued->Result().error().http_status, 503);
  EXPECT_EQ(queue_->Submit(Input()).error().http_status, 503);
}

TEST(ModelEntry, UnloadWaitsForRunningUsersThenFrees) {
  int before = FakeModel::alive().load();
  auto model = FakeModel::Make();
  auto entry = std::make_shared<ModelEntry>(model, model->info());
  model.reset();
  auto use = std::make_unique<ModelUse>(entry);
  ASSERT_TRUE(static_cast<bool>(*use));
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    use.reset();
  });
  auto t0 = Clock::now();
  EXPECT_TRUE(entry->Unload(std::chrono::seconds(5)));
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(90));
  EXPECT_EQ(FakeModel::alive().load(), before);  // freed before Unload returned
  release.join();
  ModelUse after(entry);
  EXPECT_FALSE(static_cast<bool>(after));
}

}  // namespace
}  // namespace itkit::server
