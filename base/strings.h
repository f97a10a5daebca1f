// Split: the pieces of a string between separators, as Go's strings.Split cuts them.
//
//   for (std::string_view part : Split("usr//bin", '/')) ...   // "usr", "", "bin"
//
// Every piece is returned, empty ones included: "" is one empty piece, "a/" is "a" and "". The
// pieces are views into the text (which must outlive the loop) and are found one at a time, so
// nothing is allocated and a caller reading outside data can stop at a limit before it has
// looked at every piece.
//
// Values; no thread-safety concerns.
#pragma once

#include <cstddef>
#include <iterator>
#include <string_view>

namespace imgfs {

class SplitView {
 public:
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = const std::string_view*;
    using reference = const std::string_view&;

    Iterator() = default;  // the end
    Iterator(std::string_view text, char sep) : sep_(sep), at_end_(false) { Take(text); }

    reference operator*() const { return part_; }
    pointer operator->() const { return &part_; }
    Iterator& operator++() {
      if (last_) {
        at_end_ = true;
      } else {
        Take(rest_);
      }
      return *this;
    }
    Iterator operator++(int) {
      Iterator before = *this;
      ++*this;
      return before;
    }
    bool operator==(const Iterator& o) const {
      return at_end_ == o.at_end_ && (at_end_ || part_.data() == o.part_.data());
    }
    bool operator!=(const Iterator& o) const { return !(*this == o); }

   private:
    void Take(std::string_view text) {
      size_t end = text.find(sep_);
      last_ = end == std::string_view::npos;
      part_ = text.substr(0, end);
      rest_ = last_ ? std::string_view() : text.substr(end + 1);
    }

    std::string_view part_;
    std::string_view rest_;
    char sep_ = 0;
    bool last_ = true;
    bool at_end_ = true;
  };

  SplitView(std::string_view text, char sep) : text_(text), sep_(sep) {}
  Iterator begin() const { return Iterator(text_, sep_); }
  Iterator end() const { return Iterator(); }

 private:
  std::string_view text_;
  char sep_;
};

// The pieces of `text` between the `sep`s (see the top of this file).
inline SplitView Split(std::string_view text, char sep) { return SplitView(text, sep); }

}  // namespace imgfs
