/*
 * error.c — names and sentences for the CODEC_E* codes, and codec_options defaults/validation.
 * The names are a contract with API clients: never rename one, only add.
 */
#include "codec.h"

#include <math.h>

static const struct {
	const char *code;
	const char *message;
} errors[CODEC_ERROR_COUNT] = {
	{"ok", "success"},
	{"out_of_memory", "out of memory"},
	{"io_error", "reading the input or writing the output failed"},
	{"invalid_argument", "an option is outside its allowed range"},
	{"audio_unrecognized", "the file is not WAV, Ogg Opus or WebM/Matroska audio"},
	{"audio_unsupported", "the container is known but its audio encoding is not supported"},
	{"audio_truncated", "the file ends before the audio it announces"},
	{"audio_malformed", "the file's structure is invalid or inconsistent"},
	{"audio_corrupt", "the audio data is damaged (checksum or decoding failed)"},
	{"audio_bad_sample_rate", "the sample rate is outside 8000-192000 Hz"},
	{"audio_bad_channels", "the channel count is outside 1-8"},
	{"audio_too_short", "the clip is shorter than the minimum duration"},
	{"audio_too_long", "the clip is longer than the maximum duration"},
	{"audio_too_large", "the file is larger than the maximum upload size"},
	{"audio_silent", "the clip is silent"},
	{"encoder_failed", "the Opus encoder or Ogg muxer failed"},
};

static int index_of(int err)
{
	return (err <= 0 && err > -CODEC_ERROR_COUNT) ? -err : -1;
}

const char *codec_strerror(int err)
{
	int i = index_of(err);
	return i < 0 ? "unknown error" : errors[i].message;
}

const char *codec_errcode(int err)
{
	int i = index_of(err);
	return i < 0 ? "unknown_error" : errors[i].code;
}

int codec_err_is_input(int err)
{
	return err <= CODEC_EFORMAT && err >= CODEC_ESILENT;
}

const char *codec_format_name(codec_format f)
{
	switch (f) {
	case CODEC_FORMAT_WAV:
		return "wav";
	case CODEC_FORMAT_OGG_OPUS:
		return "ogg_opus";
	case CODEC_FORMAT_WEBM_OPUS:
		return "webm_opus";
	default:
		return "unknown";
	}
}

void codec_options_init(codec_options *opt)
{
	*opt = (codec_options){
		.bitrate = CODEC_DEFAULT_BITRATE,
		.complexity = 10,
		.target_lufs = CODEC_DEFAULT_TARGET_LUFS,
		.true_peak_dbtp = CODEC_DEFAULT_TRUE_PEAK_DBTP,
		.max_gain_db = CODEC_DEFAULT_MAX_GAIN_DB,
		.min_duration_ms = CODEC_DEFAULT_MIN_DURATION_MS,
		.max_duration_ms = CODEC_DEFAULT_MAX_DURATION_MS,
		.max_input_bytes = CODEC_DEFAULT_MAX_INPUT_BYTES,
	};
}

static int in_range(double v, double lo, double hi)
{
	return isfinite(v) && v >= lo && v <= hi;
}

int codec_options_check(const codec_options *opt)
{
	if (!opt || opt->bitrate < CODEC_MIN_BITRATE || opt->bitrate > CODEC_MAX_BITRATE ||
	    opt->complexity < 0 || opt->complexity > 10 || !in_range(opt->target_lufs, -40, -5) ||
	    !in_range(opt->true_peak_dbtp, -9, 0) || !in_range(opt->max_gain_db, 0, 40) ||
	    opt->max_duration_ms == 0 || opt->min_duration_ms > opt->max_duration_ms ||
	    opt->max_input_bytes == 0)
		return CODEC_EINVAL;
	return 0;
}
