/* A stand-in for libcudart with the real ABI, for machines without an NVIDIA GPU (see README.md).
 *
 * Exports only the runtime functions module/backends/cudart.py calls, with the real signatures. "Device"
 * memory is host memory; a stream queues its async copies and performs them at cudaStreamSynchronize, so
 * output read before a synchronize is stale, as it may be on a GPU. Test-only behaviour comes from the
 * environment, read at each call: FAKE_CUDART_FAIL (comma-separated function names that then return
 * cudaErrorMemoryAllocation), FAKE_CUDART_NO_DEVICE=1 (cudaErrorNoDevice from every call that needs a device),
 * FAKE_CUDART_REPORT=path (at exit, one JSON line of what is still allocated). Build: see __init__.py.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_CUDART_VERSION
#define FAKE_CUDART_VERSION 12040
#endif

typedef int cudaError_t; /* an enum in cuda_runtime_api.h: int-sized */
enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

struct copy {
    void *dst;
    const void *src;
    size_t count;
    struct copy *next;
};
typedef struct CUstream_st {
    struct copy *head, *tail;
    struct CUstream_st *next; /* the list of live streams */
} *cudaStream_t;

struct allocation {
    char *ptr;
    size_t size;
    int device; /* 1: cudaMalloc, 0: cudaMallocHost */
    struct allocation *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct allocation *allocations;
static struct CUstream_st *streams;
static struct CUstream_st legacy_stream; /* stream 0 */

/* CUDA 10.2's sizeof(struct cudaDeviceProp): cudaGetDeviceProperties never writes past it */
#define PROPS_BYTES_10_2 704
#define NAME_BYTES 256
static const char device_name[] = "Fake GPU (CPU)";

static int failing(const char *function) {
    const char *list = getenv("FAKE_CUDART_FAIL");
    size_t n = strlen(function);
    while (list && *list) {
        const char *end = strchr(list, ',');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        if (len == n && strncmp(list, function, n) == 0) return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

static int no_device(void) {
    const char *value = getenv("FAKE_CUDART_NO_DEVICE");
    return value && *value && strcmp(value, "0") != 0;
}

/* the live allocation holding [ptr, ptr + count) of the given kind, or NULL (call with the lock held) */
static struct allocation *holding(const void *ptr, size_t count, int device) {
    for (struct allocation *a = allocations; a; a = a->next)
        if (a->device == device && (const char *)ptr >= a->ptr && (const char *)ptr + count <= a->ptr + a->size)
            return a;
    return NULL;
}

static int is_live(cudaStream_t stream) {
    if (stream == NULL) return 1;
    for (struct CUstream_st *s = streams; s; s = s->next)
        if (s == stream) return 1;
    return 0;
}

static void drain(cudaStream_t stream) {
    struct copy *c = stream->head;
    while (c) {
        struct copy *next = c->next;
        memmove(c->dst, c->src, c->count);
        free(c);
        c = next;
    }
    stream->head = stream->tail = NULL;
}

/* cudaMemcpy checks: device sides must lie inside a live cudaMalloc allocation (lock held) */
static cudaError_t check_copy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
    int dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    int src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return cudaErrorInvalidValue;
    if (count == 0) return cudaSuccess;
    if (dst == NULL || src == NULL) return cudaErrorInvalidValue;
    if (dst_device && !holding(dst, count, 1)) return cudaErrorInvalidValue;
    if (src_device && !holding(src, count, 1)) return cudaErrorInvalidValue;
    return cudaSuccess;
}

const char *cudaGetErrorName(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    default: return "unrecognized error code";
    }
}

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "unrecognized error code";
    }
}

cudaError_t cudaRuntimeGetVersion(int *runtimeVersion) {
    if (failing("cudaRuntimeGetVersion")) return cudaErrorMemoryAllocation;
    if (runtimeVersion == NULL) return cudaErrorInvalidValue;
    *runtimeVersion = FAKE_CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *count) {
    if (failing("cudaGetDeviceCount")) return cudaErrorMemoryAllocation;
    if (count == NULL) return cudaErrorInvalidValue;
    if (no_device()) return cudaErrorNoDevice;
    *count = 1;
    return cudaSuccess;
}

static cudaError_t device_properties(void *prop, int device) {
    if (prop == NULL) return cudaErrorInvalidValue;
    if (no_device()) return cudaErrorNoDevice;
    if (device != 0) return cudaErrorInvalidDevice;
    _Static_assert(NAME_BYTES <= PROPS_BYTES_10_2, "name lies inside CUDA 10.2's struct");
    memset(prop, 0, NAME_BYTES); /* only `name`: the rest moved between releases */
    memcpy(prop, device_name, sizeof device_name);
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(void *prop, int device) {
    if (failing("cudaGetDeviceProperties")) return cudaErrorMemoryAllocation;
    return device_properties(prop, device);
}

#if FAKE_CUDART_VERSION >= 12000
cudaError_t cudaGetDeviceProperties_v2(void *prop, int device) {
    if (failing("cudaGetDeviceProperties_v2")) return cudaErrorMemoryAllocation;
    return device_properties(prop, device);
}
#endif

static cudaError_t allocate(const char *function, void **ptr, size_t size, int device) {
    if (failing(function)) return cudaErrorMemoryAllocation;
    if (ptr == NULL) return cudaErrorInvalidValue;
    if (no_device()) return cudaErrorNoDevice; /* pinned memory needs a device context too */
    if (size == 0) {
        *ptr = NULL;
        return cudaSuccess;
    }
    struct allocation *a = malloc(sizeof *a);
    char *memory = malloc(size);
    if (a == NULL || memory == NULL) {
        free(a);
        free(memory);
        return cudaErrorMemoryAllocation;
    }
    memset(memory, 0xA5, size); /* CUDA promises no zeroed memory: code that counts on zeros fails here */
    *a = (struct allocation){memory, size, device, NULL};
    pthread_mutex_lock(&lock);
    a->next = allocations;
    allocations = a;
    pthread_mutex_unlock(&lock);
    *ptr = memory;
    return cudaSuccess;
}

static cudaError_t release(const char *function, void *ptr, int device) {
    if (failing(function)) return cudaErrorMemoryAllocation;
    if (ptr == NULL) return cudaSuccess;
    pthread_mutex_lock(&lock);
    for (struct allocation **link = &allocations; *link; link = &(*link)->next) {
        struct allocation *a = *link;
        if (a->ptr == ptr && a->device == device) {
            *link = a->next;
            pthread_mutex_unlock(&lock);
            free(a->ptr);
            free(a);
            return cudaSuccess;
        }
    }
    pthread_mutex_unlock(&lock);
    return cudaErrorInvalidValue; /* unknown, freed already, or the other allocator's */
}

cudaError_t cudaMalloc(void **devPtr, size_t size) { return allocate("cudaMalloc", devPtr, size, 1); }
cudaError_t cudaFree(void *devPtr) { return release("cudaFree", devPtr, 1); }
cudaError_t cudaMallocHost(void **ptr, size_t size) { return allocate("cudaMallocHost", ptr, size, 0); }
cudaError_t cudaFreeHost(void *ptr) { return release("cudaFreeHost", ptr, 0); }

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
    if (failing("cudaMemcpy")) return cudaErrorMemoryAllocation;
    pthread_mutex_lock(&lock);
    cudaError_t error = check_copy(dst, src, count, kind);
    if (error == cudaSuccess) {
        /* the legacy default stream waits for the work queued on every other stream first */
        for (struct CUstream_st *s = streams; s; s = s->next) drain(s);
        drain(&legacy_stream);
        if (count) memmove(dst, src, count);
    }
    pthread_mutex_unlock(&lock);
    return error;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream) {
    if (failing("cudaMemcpyAsync")) return cudaErrorMemoryAllocation;
    pthread_mutex_lock(&lock);
    cudaError_t error = is_live(stream) ? check_copy(dst, src, count, kind) : cudaErrorInvalidResourceHandle;
    struct copy *c = NULL;
    if (error == cudaSuccess && count && (c = malloc(sizeof *c)) == NULL) error = cudaErrorMemoryAllocation;
    if (c) {
        cudaStream_t queue = stream ? stream : &legacy_stream;
        *c = (struct copy){dst, src, count, NULL};
        if (queue->tail)
            queue->tail->next = c;
        else
            queue->head = c;
        queue->tail = c;
    }
    pthread_mutex_unlock(&lock);
    return error;
}

cudaError_t cudaStreamCreate(cudaStream_t *pStream) {
    if (failing("cudaStreamCreate")) return cudaErrorMemoryAllocation;
    if (pStream == NULL) return cudaErrorInvalidValue;
    if (no_device()) return cudaErrorNoDevice;
    cudaStream_t stream = calloc(1, sizeof *stream);
    if (stream == NULL) return cudaErrorMemoryAllocation;
    pthread_mutex_lock(&lock);
    stream->next = streams;
    streams = stream;
    pthread_mutex_unlock(&lock);
    *pStream = stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    if (failing("cudaStreamSynchronize")) return cudaErrorMemoryAllocation;
    pthread_mutex_lock(&lock);
    cudaError_t error = is_live(stream) ? cudaSuccess : cudaErrorInvalidResourceHandle;
    if (error == cudaSuccess) drain(stream ? stream : &legacy_stream);
    pthread_mutex_unlock(&lock);
    return error;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (failing("cudaStreamDestroy")) return cudaErrorMemoryAllocation;
    pthread_mutex_lock(&lock);
    for (cudaStream_t *link = &streams; *link; link = &(*link)->next) {
        if (*link == stream) {
            *link = stream->next;
            drain(stream); /* CUDA finishes a destroyed stream's work before releasing it */
            pthread_mutex_unlock(&lock);
            free(stream);
            return cudaSuccess;
        }
    }
    pthread_mutex_unlock(&lock);
    return cudaErrorInvalidResourceHandle;
}

__attribute__((destructor)) static void report_leaks(void) {
    const char *path = getenv("FAKE_CUDART_REPORT");
    if (path == NULL || *path == '\0') return;
    int device = 0, host = 0, live_streams = 0;
    for (struct allocation *a = allocations; a; a = a->next) {
        if (a->device)
            ++device;
        else
            ++host;
    }
    for (struct CUstream_st *s = streams; s; s = s->next) ++live_streams;
    FILE *out = fopen(path, "a");
    if (out == NULL) return;
    fprintf(out, "{\"version\": %d, \"device_allocations\": %d, \"host_allocations\": %d, \"streams\": %d}\n",
            FAKE_CUDART_VERSION, device, host, live_streams);
    fclose(out);
}
