#include "server/multipart.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace itkit::server {
namespace {

struct Collected {
  std::vector<PartInfo> parts;
  std::vector<std::string> data;
};

ApiStatus ParseAll(const std::string& boundary, const std::string& body, size_t chunk, Collected* c) {
  MultipartParser p(
      boundary,
      [&](const PartInfo& info) {
        c->parts.push_back(info);
        c->data.emplace_back();
        return ApiOk();
      },
      [&](std::string_view d) {
        c->data.back().append(d);
        return ApiOk();
      },
      [] { return ApiOk(); });
  for (size_t i = 0; i < body.size(); i += chunk) {
    ApiStatus st = p.Feed(std::string_view(body).substr(i, chunk));
    if (!st.ok()) return st;
  }
  return p.Finish();
}

const std::string kBody =
    "preamble to ignore\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"model_name\"\r\n\r\n"
    "tiny\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"image\"; filename=\"ct.nii.gz\"\r\n"
    "Content-Type: application/octet-stream\r\n\r\n"
    "\x1f\x8b binary \r\n--XyZ-not-a-delimiter \r\n-- and \r\n--Xy\r\n"
    "--XyZ--\r\n"
    "epilogue";

TEST(Multipart, ParsesFieldsAndFilesAtEveryChunkSize) {
  for (size_t chunk : {1, 2, 3, 5, 7, 13, 64, 100000}) {
    Collected c;
    ApiStatus st = ParseAll("XyZ", kBody, chunk, &c);
    ASSERT_TRUE(st.ok()) << "chunk " << chunk << ": " << st.error().message;
    ASSERT_EQ(c.parts.size(), 2u);
    EXPECT_EQ(c.parts[0].name, "model_name");
    EXPECT_FALSE(c.parts[0].has_filename);
    EXPECT_EQ(c.data[0], "tiny");
    EXPECT_EQ(c.parts[1].name, "image");
    EXPECT_EQ(c.parts[1].filename, "ct.nii.gz");
    EXPECT_EQ(c.parts[1].content_type, "application/octet-stream");
    EXPECT_EQ(c.data[1], "\x1f\x8b binary \r\n--XyZ-not-a-delimiter \r\n-- and \r\n--Xy");
  }
}

TEST(Multipart, BodyStartingWithTheDelimiterAndEmptyPart) {
  Collected c;
  std::string body = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n--b--";
  ASSERT_TRUE(ParseAll("b", body, 4, &c).ok());
  ASSERT_EQ(c.parts.size(), 1u);
  EXPECT_EQ(c.data[0], "");
}

TEST(Multipart, Errors) {
  Collected c;
  // No closing delimiter.
  EXPECT_EQ(ParseAll("b", "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nabc", 3, &c).error().http_status, 400);
  // No parts at all.
  EXPECT_EQ(ParseAll("b", "just text", 3, &c).error().http_status, 400);
  // Part without Content-Disposition / without name / not form-data.
  EXPECT_FALSE(ParseAll("b", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", 5, &c).ok());
  EXPECT_FALSE(ParseAll("b", "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", 5, &c).ok());
  EXPECT_FALSE(ParseAll("b", "--b\r\nContent-Disposition: attachment; name=x\r\n\r\nx\r\n--b--", 5, &c).ok());
  // Garbage after the delimiter.
  EXPECT_FALSE(ParseAll("b", "--bXX\r\n", 5, &c).ok());
  // Header block too large.
  std::string big = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\nX-Pad: " + std::string(20000, 'a');
  EXPECT_FALSE(ParseAll("b", big, 1000, &c).ok());
  // Too many parts.
  std::string many;
  for (int i = 0; i < 70; ++i) many += "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n";
  many += "--b--";
  ApiStatus st = ParseAll("b", many, 97, &c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("too many"), std::string::npos);
}

TEST(Multipart, HeaderValues) {
  HeaderValue v = ParseHeaderValue("form-data; name=\"a;b\"; filename=\"C:\\dir\\x.nii\"; other");
  EXPECT_EQ(v.value, "form-data");
  EXPECT_EQ(v.params["name"], "a;b");
  EXPECT_EQ(v.params["filename"], "C:\\dir\\x.nii");
  HeaderValue ext = ParseHeaderValue("form-data; name=image; filename*=UTF-8''%C3%A9t%C3%A9.nii");
  EXPECT_EQ(ext.params["filename*"], "UTF-8''%C3%A9t%C3%A9.nii");

  EXPECT_EQ(MultipartBoundary("multipart/form-data; boundary=abc").value(), "abc");
  EXPECT_EQ(MultipartBoundary("Multipart/Form-Data; Boundary=\"a b\"").value(), "a b");
  EXPECT_EQ(MultipartBoundary("application/json").error().http_status, 415);
  EXPECT_EQ(MultipartBoundary("").error().http_status, 415);
  EXPECT_EQ(MultipartBoundary("multipart/form-data").error().http_status, 400);
  EXPECT_EQ(MultipartBoundary("multipart/form-data; boundary=").error().http_status, 400);
}

class FormTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("itkit-form-test-" + RandomHex(4));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  size_t FilesInDir() const {
    size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator(dir_)) n += e.is_regular_file();
    return n;
  }
  Request MakeRequest(StringBody* body, const std::string& boundary, int64_t length) {
    Request req;
    req.method = "POST";
    req.headers = {{"Content-Type", "multipart/form-data; boundary=" + boundary}};
    req.content_length = length;
    req.body = body;
    req.body_limit = 1 << 20;
    return req;
  }
  std::filesystem::path dir_;
};

TEST_F(FormTest, StreamsFilesToDisk) {
  StringBody body(kBody, 7);
  Request req = MakeRequest(&body, "XyZ", static_cast<int64_t>(kBody.size()));
  FormOptions fo;
  fo.temp_dir = dir_.string();
  fo.file_fields = {"image"};
  auto form = ReadMultipartForm(req, fo);
  ASSERT_TRUE(form.ok()) << form.error().message;
  EXPECT_EQ(form->fields["model_name"], "tiny");
  ASSERT_EQ(form->files.count("image"), 1u);
  const UploadedFile& f = form->files["image"];
  EXPECT_EQ(f.filename, "ct.nii.gz");
  std::ifstream in(f.file->path(), std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "\x1f\x8b binary \r\n--XyZ-not-a-delimiter \r\n-- and \r\n--Xy");
  EXPECT_EQ(FilesInDir(), 1u);
  form = MakeError(500, "drop");  // destroying the form removes the file
  EXPECT_EQ(FilesInDir(), 0u);
}

TEST_F(FormTest, OversizeAndTruncatedBodiesLeaveNoFiles) {
  FormOptions fo;
  fo.temp_dir = dir_.string();
  fo.file_fields = {"image"};
  {
    StringBody body(kBody, 5);
    Request req = MakeRequest(&body, "XyZ", -1);
    req.body_limit = 100;
    auto form = ReadMultipartForm(req, fo);
    ASSERT_FALSE(form.ok());
    EXPECT_EQ(form.error().http_status, 413);
  }
  {
    StringBody body(kBody.substr(0, 200), 5);
    Request req = MakeRequest(&body, "XyZ", static_cast<int64_t>(kBody.size()));
    auto form = ReadMultipartForm(req, fo);
    ASSERT_FALSE(form.ok());
    EXPECT_EQ(form.error().http_status, 408);
  }
  {
    StringBody body(kBody, 5);
    Request req = MakeRequest(&body, "XyZ", 1 << 30);  // declared too large: refused before reading
    auto form = ReadMultipartForm(req, fo);
    ASSERT_FALSE(form.ok());
    EXPECT_EQ(form.error().http_status, 413);
    EXPECT_EQ(req.body_read, 0);
  }
  EXPECT_EQ(FilesInDir(), 0u);
}

TEST_F(FormTest, FieldSizeLimitAndDuplicateFiles) {
  FormOptions fo;
  fo.temp_dir = dir_.string();
  fo.file_fields = {"image"};
  fo.max_field_bytes = 8;
  std::string body = "--b\r\nContent-Disposition: form-data; name=\"model_name\"\r\n\r\n0123456789\r\n--b--\r\n";
  StringBody sb(body);
  Request req = MakeRequest(&sb, "b", static_cast<int64_t>(body.size()));
  EXPECT_EQ(ReadMultipartForm(req, fo).error().http_status, 413);
  std::string dup = "--b\r\nContent-Disposition: form-data; name=\"image\"; filename=a\r\n\r\nx\r\n"
                    "--b\r\nContent-Disposition: form-data; name=\"image\"; filename=b\r\n\r\ny\r\n--b--\r\n";
  StringBody sb2(dup);
  Request req2 = MakeRequest(&sb2, "b", static_cast<int64_t>(dup.size()));
  EXPECT_EQ(ReadMultipartForm(req2, fo).error().http_status, 400);
  EXPECT_EQ(FilesInDir(), 0u);
}

}  // namespace
}  // namespace itkit::server

namespace itkit::server {
namespace {

TEST(Form, UrlEncodedFieldsWithoutFiles) {
  StringBody body("model_name=my+model&force_cpu=true&x=%41");
  Request req;
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  req.content_length = 40;
  req.body = &body;
  auto form = ReadMultipartForm(req, FormOptions{});
  ASSERT_TRUE(form.ok()) << form.error().message;
  EXPECT_EQ(form->fields["model_name"], "my model");
  EXPECT_EQ(form->fields["x"], "A");
  EXPECT_TRUE(form->files.empty());
}

}  // namespace
}  // namespace itkit::server
