// Status and Result<T>: how errors cross module boundaries in imgfs.
//
// A Status is a cheap value: a Code the caller can act on and a message a user can act on
// ("registry 127.0.0.1:5000 refused the credentials for library/alpine: check docker login").
// Result<T> holds either a T or a non-OK Status, never both. errno values never appear here;
// fs/fuse maps codes to errno at the filesystem boundary.
//
// Thread-safety: values; safe to copy between threads.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace imgfs {

enum class Code {
  kOk = 0,
  kInvalidArgument,  // bad input from the user (reference, flag, path)
  kNotFound,         // repository, tag, blob, platform or file does not exist
  kUnauthorized,     // credentials missing or refused
  kDigestMismatch,   // bytes do not hash to what a trusted digest says
  kCorrupt,          // malformed data from outside (manifest, tar, TOC, gzip)
  kUnsupported,      // valid but not handled (schema1, unknown media type)
  kUnavailable,      // transient: network, 5xx, 429; retrying may help
  kIoError,          // local disk / OS failure
  kInternal,         // a bug in imgfs
};

// Short stable name of a code, for logs ("not-found", "digest-mismatch").
const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Unauthorized(std::string m) { return {Code::kUnauthorized, std::move(m)}; }
  static Status DigestMismatch(std::string m) { return {Code::kDigestMismatch, std::move(m)}; }
  static Status Corrupt(std::string m) { return {Code::kCorrupt, std::move(m)}; }
  static Status Unsupported(std::string m) { return {Code::kUnsupported, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }

  // A copy whose message is "context: message", code unchanged.
  Status WithContext(std::string_view context) const;
  // "digest-mismatch: message", or "ok".
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  // An OK Status holds no value, so it becomes kInternal (a bug in the caller, reported as an
  // error in every build rather than a Result that is neither a value nor an error).
  Result(Status status)  // NOLINT
      : v_(status.ok() ? Status::Internal("a Result was built from an OK Status")
                       : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  // The error; OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace imgfs

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define IMGFS_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::imgfs::Status imgfs_status_ = (expr);        \
    if (!imgfs_status_.ok()) return imgfs_status_; \
  } while (0)

#define IMGFS_CONCAT_INNER_(a, b) a##b
#define IMGFS_CONCAT_(a, b) IMGFS_CONCAT_INNER_(a, b)
// `IMGFS_ASSIGN_OR_RETURN(auto x, F());` binds x to F()'s value or returns its Status.
#define IMGFS_ASSIGN_OR_RETURN(lhs, expr) \
  IMGFS_ASSIGN_OR_RETURN_IMPL_(IMGFS_CONCAT_(imgfs_result_, __LINE__), lhs, expr)
#define IMGFS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
