/*
 * codec.h — Jiayin's audio codec library: the only public header of codec/.
 *
 * Turns an uploaded clip (WAV, Ogg Opus or WebM Opus, detected from its bytes) into a mono
 * 48 kHz Ogg Opus file at a fixed loudness (EBU R128, -16 LUFS by default) with a true-peak
 * ceiling, plus a waveform summary for clients to draw. The library is pure: no sockets, no
 * threads, no databases. Input comes through a codec_source (two sequential passes: the first
 * measures, the second encodes), output goes to a codec_sink as it is produced, so memory does
 * not grow with the clip's length. Every fallible call returns 0 or a negative CODEC_E* code;
 * codec_strerror() gives a human sentence and codec_errcode() a stable string for APIs.
 */
#ifndef JIAYIN_CODEC_H
#define JIAYIN_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. Stable: the API and the tools expose their names (codec_errcode). */
enum {
	CODEC_OK = 0,
	CODEC_ENOMEM = -1,       /* out_of_memory */
	CODEC_EIO = -2,          /* io_error: the source or sink failed */
	CODEC_EINVAL = -3,       /* invalid_argument: bad options */
	CODEC_EFORMAT = -4,      /* audio_unrecognized: not WAV, Ogg or WebM/Matroska */
	CODEC_EUNSUPPORTED = -5, /* audio_unsupported: known container, encoding we do not take */
	CODEC_ETRUNCATED = -6,   /* audio_truncated: the file ends before its structures do */
	CODEC_EMALFORMED = -7,   /* audio_malformed: inconsistent or invalid structure */
	CODEC_ECORRUPT = -8,     /* audio_corrupt: checksum failure or undecodable audio data */
	CODEC_ERATE = -9,        /* audio_bad_sample_rate: outside 8-192 kHz */
	CODEC_ECHANNELS = -10,   /* audio_bad_channels: outside 1-8 channels */
	CODEC_ETOOSHORT = -11,   /* audio_too_short: under the minimum duration */
	CODEC_ETOOLONG = -12,    /* audio_too_long: over the maximum duration */
	CODEC_ETOOLARGE = -13,   /* audio_too_large: input over the byte limit */
	CODEC_ESILENT = -14,     /* audio_silent: digital silence / nothing above the -70 LUFS gate */
	CODEC_EENCODE = -15,     /* encoder_failed: libopus or libogg refused (a bug, not the input) */
};
#define CODEC_ERROR_COUNT 16 /* number of codes above, including CODEC_OK */

/* Human-readable sentence for an error code (never NULL). */
const char *codec_strerror(int err);
/* Stable machine-readable name for an error code, e.g. "audio_too_short" (never NULL). */
const char *codec_errcode(int err);
/* 1 when err is the input's fault (sending it again gives the same answer), 0 when it is ours
 * or the machine's (no memory, I/O, bad options, the encoder): the caller may try again. */
int codec_err_is_input(int err);

typedef enum {
	CODEC_FORMAT_UNKNOWN = 0,
	CODEC_FORMAT_WAV,
	CODEC_FORMAT_OGG_OPUS,
	CODEC_FORMAT_WEBM_OPUS,
} codec_format;

/* "wav", "ogg_opus", "webm_opus" or "unknown". */
const char *codec_format_name(codec_format f);

/* Limits of what we accept, and the defaults of codec_options. */
#define CODEC_MIN_RATE 8000
#define CODEC_MAX_RATE 192000
#define CODEC_MAX_CHANNELS 8
#define CODEC_OUTPUT_RATE 48000
#define CODEC_FRAME_SAMPLES 960 /* 20 ms at 48 kHz */
#define CODEC_WAVEFORM_POINTS 100
#define CODEC_DEFAULT_BITRATE 24000
#define CODEC_MIN_BITRATE 12000
#define CODEC_MAX_BITRATE 64000
#define CODEC_DEFAULT_TARGET_LUFS (-16.0)
#define CODEC_DEFAULT_TRUE_PEAK_DBTP (-1.0)
#define CODEC_DEFAULT_MAX_GAIN_DB 24.0
#define CODEC_DEFAULT_MIN_DURATION_MS 500u
#define CODEC_DEFAULT_MAX_DURATION_MS (15u * 60u * 1000u)
#define CODEC_DEFAULT_MAX_INPUT_BYTES (512ull * 1024 * 1024)

/*
 * Where input comes from. read() fills up to len bytes and sets *got (0 only at end of input);
 * seek() moves to an absolute offset (the transcoder only ever seeks to 0, to start its second
 * pass). Both return 0 or a negative code (CODEC_EIO for failures).
 */
typedef struct codec_source {
	int (*read)(void *ctx, uint8_t *buf, size_t len, size_t *got);
	int (*seek)(void *ctx, uint64_t offset);
	void *ctx;
} codec_source;

/*
 * Where output goes. write() appends all len bytes or fails with a negative code. Optional:
 * patch() overwrites len bytes already written at `offset` (the transcoder rewrites the first
 * page to set OpusHead's output gain once it has measured the encoded file); reset() discards
 * everything written (to encode again when a correction by output gain is not enough).
 * Without them the transcoder keeps its first encoding as it is.
 */
typedef struct codec_sink {
	int (*write)(void *ctx, const uint8_t *buf, size_t len);
	int (*patch)(void *ctx, uint64_t offset, const uint8_t *buf, size_t len);
	int (*reset)(void *ctx);
	void *ctx;
} codec_sink;

/* A source reading a caller-owned buffer; `mem` must outlive the source's use. */
typedef struct codec_memory_source {
	const uint8_t *data;
	size_t len, pos;
} codec_memory_source;
void codec_source_memory(codec_source *src, codec_memory_source *mem, const void *data,
			 size_t len);

/* A source reading a file descriptor with pread (the caller keeps ownership of fd). */
typedef struct codec_fd_source {
	int fd;
	uint64_t pos;
} codec_fd_source;
void codec_source_fd(codec_source *src, codec_fd_source *fds, int fd);

/* A sink writing to a file descriptor (the caller keeps ownership of fd). */
void codec_sink_fd(codec_sink *sink, int *fd);

/* A sink appending to a growable heap buffer; free `buf->data` with free(). */
typedef struct codec_buffer {
	uint8_t *data;
	size_t len, cap;
	size_t max; /* 0: unlimited; otherwise writes beyond it fail with CODEC_ETOOLARGE */
} codec_buffer;
void codec_sink_buffer(codec_sink *sink, codec_buffer *buf);

typedef struct codec_options {
	int bitrate;              /* bits/s, CODEC_MIN_BITRATE..CODEC_MAX_BITRATE */
	int complexity;           /* libopus complexity 0..10 */
	double target_lufs;       /* integrated loudness to reach, -40..-5 */
	double true_peak_dbtp;    /* ceiling the encoded file must respect, -9..0 */
	double max_gain_db;       /* the file ends at most this much louder than the input, 0..40 */
	uint32_t min_duration_ms; /* shorter clips fail with CODEC_ETOOSHORT */
	uint32_t max_duration_ms; /* longer clips fail with CODEC_ETOOLONG */
	uint64_t max_input_bytes; /* larger inputs fail with CODEC_ETOOLARGE */
	uint32_t serial;          /* Ogg stream serial number, used when serial_fixed */
	int serial_fixed;         /* 0: a random serial (getrandom) per file */
} codec_options;

/* Fill `opt` with the defaults above. */
void codec_options_init(codec_options *opt);
/* 0 if every field is within its range, CODEC_EINVAL otherwise. */
int codec_options_check(const codec_options *opt);

/* What the transcoder measured and produced. */
typedef struct codec_result {
	codec_format input_format;
	uint32_t input_rate;
	unsigned input_channels;
	uint64_t input_frames;      /* sample frames at input_rate, after container trimming */
	uint64_t output_samples;    /* 48 kHz mono samples the Ogg file decodes to */
	uint32_t duration_ms;       /* output_samples in milliseconds (rounded) */
	double input_lufs;          /* integrated loudness of the mono downmix at 48 kHz */
	int downmix_channel;        /* the channel encoded alone (the mean cancelled), or -1 */
	double gain_db;             /* gain applied before the limiter */
	double codec_loss_db;       /* loudness change by Opus (K-weighted energy, decoded/input) */
	double header_gain_db;      /* OpusHead output gain that corrects it (1/256 dB steps) */
	double output_lufs;         /* the decoded file's loudness, header gain included */
	double output_peak_dbtp;    /* true peak of the decoded output, header gain included */
	unsigned encodes;           /* encoding passes it took (2 to 4 when corrected) */
	unsigned fit_passes;        /* passes of the gain model (the first rides on the measure) */
	double limiter_max_db;      /* deepest gain reduction of the true-peak limiter (<= 0) */
	uint64_t output_bytes;      /* size of the Ogg Opus file */
	uint32_t preskip;           /* Opus pre-skip written in OpusHead */
	uint8_t waveform[CODEC_WAVEFORM_POINTS]; /* peak per slice, 0..255 (linear) */
} codec_result;

/*
 * Transcode one clip: detect the format, decode, downmix to mono, resample to 48 kHz, measure
 * loudness (pass 1); decode again, apply gain and the true-peak limiter, encode with libopus and
 * mux Ogg Opus into `sink` (pass 2). On failure nothing more is written to the sink; the caller
 * discards what was written (the tool writes to a temporary file it unlinks). `res` may be NULL.
 */
int codec_transcode(const codec_source *src, const codec_sink *sink, const codec_options *opt,
		    codec_result *res);

/* What the first bytes say: a cheap look at the container, without decoding. */
codec_format codec_sniff(const uint8_t *head, size_t len);

/*
 * Decoding only, for tests and tools: open a clip and pull interleaved float PCM as the
 * container describes it (pre-skip, end trimming and output gain applied for Opus).
 */
typedef struct codec_decoder codec_decoder;
typedef struct codec_stream_info {
	codec_format format;
	uint32_t rate;
	unsigned channels;
	int lfe_channel; /* index of the low-frequency channel, or -1 */
} codec_stream_info;

/* max_input_bytes: 0 means CODEC_DEFAULT_MAX_INPUT_BYTES. `src` must outlive the decoder. */
int codec_decoder_open(codec_decoder **dec, const codec_source *src, uint64_t max_input_bytes,
		       codec_stream_info *info);
/* Up to max_frames frames into pcm (max_frames * channels floats); *frames == 0 at the end. */
int codec_decoder_read(codec_decoder *dec, float *pcm, size_t max_frames, size_t *frames);
/* Accepts NULL and half-opened decoders. */
void codec_decoder_close(codec_decoder *dec);

#ifdef __cplusplus
}
#endif
#endif
