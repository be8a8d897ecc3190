/* seed_lib.c — the body of two tiny shared objects built only to be ELF
 * seeds for fuzz_elf (tests/fuzz/CMakeLists.txt): one with a DT_RUNPATH,
 * one with a DT_RPATH, both with $ORIGIN entries of every shape the reader
 * resolves, ignores or normalises, and DT_NEEDED entries, as an extension
 * module from a wheel has. */
int mpiimport_fuzz_seed(int x);

int mpiimport_fuzz_seed(int x) { return x + 1; }
