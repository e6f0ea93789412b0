// OpenBLAS: CBLAS plus the one LAPACK routine KVLab needs (symmetric eigensolver, for PCA).
#ifndef KVLAB_CBLAS_SHIM_H
#define KVLAB_CBLAS_SHIM_H
#include <cblas.h>

// LAPACK ssyev (Fortran ABI, exported by libopenblas). jobz 'V' = eigenvectors, uplo 'U'/'L'.
void ssyev_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
            float *w, float *work, const int *lwork, int *info);
void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
            double *w, double *work, const int *lwork, int *info);
#endif
