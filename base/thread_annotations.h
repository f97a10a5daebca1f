// Clang thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html), as
// leveldb and abseil spell them. With clang and -Wthread-safety the compiler checks that a
// member marked GUARDED_BY(mu_) is only touched with mu_ held, and that a function marked
// REQUIRES(mu_) is only called with it held; other compilers see empty macros.
//
// The project builds with -Wthread-safety -Werror=thread-safety when configured with
// IMGFS_THREAD_SAFETY=ON (scripts/test does), so an annotation is a checked claim, not a
// comment. Use them with base/mutex.h's Mutex: std::mutex carries no annotations.
#pragma once

#if defined(__clang__)
#define IMGFS_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define IMGFS_THREAD_ANNOTATION_(x)
#endif

// A class that is a lock (Mutex).
#define CAPABILITY(x) IMGFS_THREAD_ANNOTATION_(capability(x))
// An RAII class that holds a lock for its lifetime (MutexLock).
#define SCOPED_CAPABILITY IMGFS_THREAD_ANNOTATION_(scoped_lockable)

// A member that may be read or written only with the lock held.
#define GUARDED_BY(x) IMGFS_THREAD_ANNOTATION_(guarded_by(x))
// A pointer member whose pointee may be touched only with the lock held.
#define PT_GUARDED_BY(x) IMGFS_THREAD_ANNOTATION_(pt_guarded_by(x))

// Lock ordering: this lock is taken after / before the named ones.
#define ACQUIRED_AFTER(...) IMGFS_THREAD_ANNOTATION_(acquired_after(__VA_ARGS__))
#define ACQUIRED_BEFORE(...) IMGFS_THREAD_ANNOTATION_(acquired_before(__VA_ARGS__))

// The caller must hold the lock (exclusively / at least shared).
#define REQUIRES(...) IMGFS_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) IMGFS_THREAD_ANNOTATION_(requires_shared_capability(__VA_ARGS__))
// The caller must NOT hold the lock (the function takes it).
#define EXCLUDES(...) IMGFS_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))

// The function takes / releases the lock.
#define ACQUIRE(...) IMGFS_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) IMGFS_THREAD_ANNOTATION_(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) IMGFS_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) IMGFS_THREAD_ANNOTATION_(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) IMGFS_THREAD_ANNOTATION_(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) IMGFS_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))

// The function checks at run time that the lock is held; the analysis then assumes it.
#define ASSERT_CAPABILITY(x) IMGFS_THREAD_ANNOTATION_(assert_capability(x))
// The function returns a reference to the named lock.
#define RETURN_CAPABILITY(x) IMGFS_THREAD_ANNOTATION_(lock_returned(x))

// Turns the analysis off for one function. Say why next to every use.
#define NO_THREAD_SAFETY_ANALYSIS IMGFS_THREAD_ANNOTATION_(no_thread_safety_analysis)
