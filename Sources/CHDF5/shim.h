// HDF5 (serial, 1.10+). Its type and property-list "constants" are macros that expand to
// function calls or globals, which Swift cannot import: expose them as inline accessors.
#ifndef KVLAB_CHDF5_SHIM_H
#define KVLAB_CHDF5_SHIM_H
#include <hdf5.h>

static inline hid_t kv_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t kv_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t kv_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t kv_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t kv_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t kv_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t kv_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t kv_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t kv_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t kv_H5S_ALL(void) { return H5S_ALL; }
static inline unsigned kv_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned kv_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned kv_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned kv_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline size_t kv_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline int kv_H5T_STR_NULLTERM(void) { return H5T_STR_NULLTERM; }
static inline int kv_H5T_CSET_UTF8(void) { return H5T_CSET_UTF8; }
static inline hsize_t kv_H5S_UNLIMITED(void) { return H5S_UNLIMITED; }
/// HDF5's metadata checksum (Jenkins lookup3), exported by the library but not declared in its
/// public headers: KVHDF5 recomputes a superblock checksum that H5Fget_file_image leaves stale.
uint32_t H5_checksum_metadata(const void *data, size_t len, uint32_t initval);
/// Turn off HDF5's automatic error printing (KVLab reports errors itself).
static inline void kv_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
#endif
