// What guard.c and spawner.c share; private to CUDPD (Swift sees CUDPD.h only). Everything here is
// async-signal-safe: it runs in forked children of a multi-threaded process.
#ifndef CUDPD_PROCESS_TREE_H
#define CUDPD_PROCESS_TREE_H

#include "CUDPD.h"

/// The largest number of processes of one tree remembered while freezing it.
#define CUDPD_MAX_TREE 4096

/// Stops (SIGSTOP) every descendant of `parent` that is not in `skip` (nor already in `tree`), children first
/// found, recursively, and appends each to `tree` (`known` entries so far, at most `capacity`). Returns the new
/// count. A stopped process cannot fork, so what is frozen can then be killed without a race.
int cudpd_freeze_children(pid_t parent, pid_t *tree, int known, int capacity, const pid_t *skip, int skipped);

/// Sends one `cudpd_guard_report` on `control` (never blocks for long: the socket is a fresh socketpair's).
void cudpd_guard_report_send(int control, int32_t kind, int32_t error, int32_t status, int32_t exited,
                             int32_t timed_out, int32_t killed, pid_t guard);

/// capset() of the calling process's first capability word.
int cudpd_set_capabilities(uint32_t effective, uint32_t permitted);

/// Closes every descriptor from `first` up.
void cudpd_close_from(int first);

/// Becomes the guard of `program` (see `cudpd_spawner_start` in CUDPD.h); never returns.
void cudpd_guard_run(const struct cudpd_program *program, int fd0, int fd1, int fd2, int control)
    __attribute__((noreturn));

#endif
