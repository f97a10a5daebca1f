#include "fs/layer/toc_sax.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

namespace imgfs::fs {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxTocNumber = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// The SAX handler (see toc_sax.h). Returning false stops the parse; error_ says why.
class TocSax final : public nlohmann::json_sax<json> {
 public:
  TocSax(const TocEntrySink& sink, const TocLimits& limits) : sink_(sink), limits_(limits) {}

  bool null() override { return Value(Scalar{}); }
  bool boolean(bool) override { return Value(Scalar{Scalar::kOther}); }
  bool number_integer(number_integer_t v) override {
    if (v >= 0) return number_unsigned(static_cast<uint64_t>(v));
    return Value(Scalar{Scalar::kNegative});
  }
  bool number_unsigned(number_unsigned_t v) override {
    Scalar s{Scalar::kUnsigned};
    s.number = v;
    return Value(s);
  }
  bool number_float(number_float_t, const string_t&) override {
    return Value(Scalar{Scalar::kFloat});
  }
  bool string(string_t& v) override {
    Scalar s{Scalar::kString};
    s.text = &v;
    return Value(s);
  }
  bool binary(binary_t&) override { return Value(Scalar{Scalar::kOther}); }

  bool start_object(std::size_t) override {
    if (!Enter()) return false;
    switch (Where()) {
      case kTop:
        stack_.push_back(kTopObject);
        return true;
      case kInEntries:
        if (entries_ >= limits_.max_entries) {
          return Fail(Status::Corrupt("the TOC lists more than " +
                                      std::to_string(limits_.max_entries) + " entries, the limit"));
        }
        entry_.Clear();
        stack_.push_back(kEntry);
        return true;
      case kEntryXattrs:
        stack_.push_back(kXattrs);
        return true;
      default:
        return Nested();
    }
  }

  bool end_object() override {
    const Frame f = Leave();
    if (f == kTopObject) {
      top_done_ = true;
    } else if (f == kEntry) {
      Status s = sink_(entry_);
      if (!s.ok()) return Fail(s.WithContext(EntryName()));
      ++entries_;
      entry_.Clear();
    }
    return true;
  }

  bool start_array(std::size_t) override {
    if (!Enter()) return false;
    switch (Where()) {
      case kTop:
        return Fail(Status::Corrupt("the TOC is not a JSON object"));
      case kTopEntries:
        if (saw_entries_) return Fail(Status::Corrupt("the TOC has two \"entries\" lists"));
        saw_entries_ = true;
        stack_.push_back(kEntries);
        return true;
      case kInEntries:
        return FailEntry("not a JSON object");
      case kEntryXattrs:
        return FailEntry("\"xattrs\" is not an object");
      default:
        return Nested();
    }
  }

  bool end_array() override {
    Leave();
    return true;
  }

  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }

  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    if (error_.ok()) {
      error_ = Status::Corrupt("the TOC is not valid JSON (at byte " + std::to_string(position) +
                               "): " + e.what());
    }
    return false;
  }

  // The outcome once sax_parse has returned.
  Status Finish(bool parsed) {
    if (!error_.ok()) return error_;
    if (!parsed || !top_done_) return Status::Corrupt("the TOC is not a JSON object");
    if (bad_version_) {
      return Status::Unsupported("TOC version " + version_text_ + " is not supported (only 1)");
    }
    if (!saw_entries_) return Status::Corrupt("the TOC has no \"entries\" list");
    return Status::Ok();
  }

 private:
  enum Frame : uint8_t { kTopObject, kEntries, kEntry, kXattrs, kSkipped };
  // What the next value is, from the innermost frame and the key before it.
  enum Place {
    kTop,
    kTopEntries,
    kTopVersion,
    kInEntries,
    kEntryField,
    kEntryXattrs,
    kValueOfXattr,
    kElsewhere
  };
  struct Scalar {
    enum Kind { kNull, kUnsigned, kNegative, kFloat, kString, kOther } kind = kNull;
    uint64_t number = 0;
    std::string* text = nullptr;
  };

  Place Where() const {
    if (stack_.empty()) return kTop;
    switch (stack_.back()) {
      case kTopObject:
        if (key_ == "entries") return kTopEntries;
        if (key_ == "version") return kTopVersion;
        return kElsewhere;
      case kEntries:
        return kInEntries;
      case kEntry:
        return key_ == "xattrs" ? kEntryXattrs : kEntryField;
      case kXattrs:
        return kValueOfXattr;
      case kSkipped:
        return kElsewhere;
    }
    return kElsewhere;
  }

  bool Enter() {
    if (++depth_ > kMaxTocNesting) {
      return Fail(Status::Corrupt("the TOC nests more than " + std::to_string(kMaxTocNesting) +
                                  " levels deep"));
    }
    return true;
  }
  Frame Leave() {
    const Frame f = stack_.back();
    stack_.pop_back();
    --depth_;
    key_.clear();
    return f;
  }
  bool Skip() {
    stack_.push_back(kSkipped);
    return true;
  }
  // An object or array where neither opens a part of the schema: refused where a scalar must
  // be, skipped anywhere else.
  bool Nested() {
    switch (Where()) {
      case kValueOfXattr:
        return FailEntry("xattr value is not a string");
      case kEntryField:
        return NestedField();
      case kTopVersion:
        bad_version_ = true;
        version_text_ = "(not a number)";
        return Skip();
      default:
        return Skip();
    }
  }
  bool Fail(Status s) {
    if (error_.ok()) error_ = std::move(s);
    return false;
  }
  std::string EntryName() {
    std::string name = entry_.string(TocEntryFields::kName);
    if (name.size() > 256) name = name.substr(0, 256) + "...";
    return "TOC entry " + std::to_string(entries_) + (name.empty() ? "" : " (" + name + ")");
  }

  bool Value(const Scalar& v) {
    switch (Where()) {
      case kTop:
        return Fail(Status::Corrupt("the TOC is not a JSON object"));
      case kTopEntries:
        return Fail(Status::Corrupt("the TOC has no \"entries\" list"));
      case kTopVersion:
        if (v.kind != Scalar::kUnsigned || v.number != 1) {
          bad_version_ = true;
          version_text_ = v.kind == Scalar::kUnsigned ? std::to_string(v.number)
                          : v.kind == Scalar::kString ? "\"" + v.text->substr(0, 32) + "\""
                                                      : "(not 1)";
        }
        return true;
      case kInEntries:
        return FailEntry("not a JSON object");
      case kEntryField:
        return Field(v);
      case kEntryXattrs:
        if (v.kind == Scalar::kNull) return true;
        return FailEntry("\"xattrs\" is not an object");
      case kValueOfXattr:
        if (v.kind != Scalar::kString) return FailEntry("xattr value is not a string");
        if (entry_.xattrs.size() >= limits_.max_xattrs_per_entry) {
          return Fail(Status::Corrupt("more than " + std::to_string(limits_.max_xattrs_per_entry) +
                                      " xattrs, the limit")
                          .WithContext(EntryName()));
        }
        if (key_.size() > kMaxXattrName) {
          return Fail(TooLong("xattr name", key_, kMaxXattrName).WithContext(EntryName()));
        }
        entry_.xattrs.emplace_back(std::move(key_), std::move(*v.text));
        key_.clear();
        return true;
      case kElsewhere:
        return true;
    }
    return true;
  }

  // A scalar field of an entry; unknown keys are ignored, null means absent.
  bool Field(const Scalar& v) {
    std::optional<TocEntryFields::Field> f = TocEntryFields::Find(key_);
    if (!f || v.kind == Scalar::kNull) return true;
    const std::string quoted = "\"" + key_ + "\"";
    if (*f < TocEntryFields::kNumberFields) {
      switch (v.kind) {
        case Scalar::kUnsigned:
          if (v.number > kMaxTocNumber) return FailEntry(quoted + " is too large");
          entry_.numbers[*f] = v.number;
          return true;
        case Scalar::kNegative:
          return FailEntry(quoted + " is negative");
        default:
          return FailEntry(quoted + " is not an integer");
      }
    }
    if (v.kind != Scalar::kString) return FailEntry(quoted + " is not a string");
    entry_.string(*f) = std::move(*v.text);
    return true;
  }
  // An array or object as the value of an entry's field: fine for fields imgfs does not know.
  bool NestedField() {
    std::optional<TocEntryFields::Field> f = TocEntryFields::Find(key_);
    if (!f) return Skip();
    return FailEntry("\"" + key_ + "\" is not " +
                     (*f < TocEntryFields::kNumberFields ? "an integer" : "a string"));
  }
  bool FailEntry(const std::string& message) {
    return Fail(Status::Corrupt(message).WithContext(EntryName()));
  }

  const TocEntrySink& sink_;
  const TocLimits limits_;
  std::vector<Frame> stack_;
  size_t depth_ = 0;
  std::string key_;
  TocEntryFields entry_;
  size_t entries_ = 0;
  bool saw_entries_ = false;
  bool top_done_ = false;
  bool bad_version_ = false;
  std::string version_text_;
  Status error_;
};

}  // namespace

Status ForEachTocEntry(std::string_view toc_json, const TocLimits& limits,
                       const TocEntrySink& sink) {
  TocSax sax(sink, limits);
  bool parsed = json::sax_parse(toc_json.begin(), toc_json.end(), &sax);
  return sax.Finish(parsed);
}

Status TooLong(std::string_view what, std::string_view text, size_t limit) {
  return Status::Corrupt(std::string(what) + " '" + AbbreviateName(text) + "' is " +
                         std::to_string(text.size()) + " bytes long, more than the limit of " +
                         std::to_string(limit));
}

}  // namespace imgfs::fs
