/*
 * test_pipeline.c — codec_transcode end to end in memory: exact durations through our own
 * Ogg decoder, loudness on target, error codes for every refusal, nothing partial, the
 * waveform, determinism with a fixed serial, channels in opposite phase, and the error names API
 * clients rely on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

#include <ebur128.h>
#include <stdio.h>
#include <time.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

static codec_options fast_options(void)
{
	codec_options o;
	codec_options_init(&o);
	o.serial_fixed = 1;
	o.serial = 42;
	return o;
}

static void durations_are_exact(void **st)
{
	(void)st;
	const uint32_t rates[] = {8000, 16000, 22050, 44100, 48000, 96000};
	for (size_t i = 0; i < sizeof rates / sizeof *rates; i++) {
		membuf in = make_speechlike_wav(rates[i], i % 2 ? 2 : 1, 1.37, 0.3);
		codec_options o = fast_options();
		codec_buffer out;
		codec_result res;
		assert_int_equal(transcode_mem(&in, &o, &out, &res), 0);
		long long frames = (long long)(1.37 * rates[i]); /* what the helper generated */
		long long want = llround((double)frames * 48000 / rates[i]);
		codec_stream_info info;
		long long got = decode_count(out.data, out.len, &info, NULL);
		/* soxr's output length rounds; within one sample of the ideal count. */
		assert_true(llabs(got - want) <= 1);
		assert_int_equal(got, (long long)res.output_samples);
		assert_int_equal(info.channels, 1);
		assert_int_equal(res.input_rate, rates[i]);
		assert_int_equal(res.output_bytes, out.len);
		free(in.d);
		free(out.data);
	}
}

/* A decoder of the transcoded file `out` (src and mem: the caller's, alive while it reads). */
static codec_decoder *decode_open(const codec_buffer *out, codec_source *src,
                                  codec_memory_source *mem, codec_stream_info *info)
{
	codec_decoder *dec;
	codec_source_memory(src, mem, out->data, out->len);
	assert_int_equal(codec_decoder_open(&dec, src, 0, info), 0);
	return dec;
}

/* The integrated loudness of a transcoded file as libebur128 measures its decoded samples. */
static double decoded_lufs(const codec_buffer *out)
{
	codec_source src;
	codec_memory_source mem;
	codec_stream_info info;
	codec_decoder *dec = decode_open(out, &src, &mem, &info);
	ebur128_state *e = ebur128_init(1, info.rate, EBUR128_MODE_I);
	assert_non_null(e);
	static float pcm[4096];
	size_t got;
	int rc;
	while ((rc = codec_decoder_read(dec, pcm, 4096, &got)) == 0 && got > 0)
		assert_int_equal(ebur128_add_frames_float(e, pcm, got), EBUR128_SUCCESS);
	assert_int_equal(rc, 0); /* decoded to its end, not to an error */
	double l;
	assert_int_equal(ebur128_loudness_global(e, &l), EBUR128_SUCCESS);
	ebur128_destroy(&e);
	codec_decoder_close(dec);
	return l;
}

static void loudness_and_peak_on_target(void **st)
{
	(void)st;
	const double levels[] = {0.01, 0.3, 3.0}; /* about -45, -16 and +4 LUFS-ish */
	for (size_t i = 0; i < 3; i++) {
		membuf in = make_speechlike_wav(44100, 2, 4.0, levels[i]);
		codec_options o = fast_options();
		codec_buffer out;
		codec_result res;
		assert_int_equal(transcode_mem(&in, &o, &out, &res), 0);
		print_message("# level %g: in %.2f gain %.2f out %.2f peak %.2f encodes %u\n",
			      levels[i], res.input_lufs, res.gain_db, res.output_lufs,
			      res.output_peak_dbtp, res.encodes);
		/* The cap bounds how much louder than the input the file gets. */
		double goal = fmin(o.target_lufs, res.input_lufs + o.max_gain_db);
		assert_true(fabs(res.output_lufs - goal) <= 0.5);
		if (goal < o.target_lufs)
			assert_true(res.output_lufs < o.target_lufs - 1);
		assert_true(res.output_peak_dbtp <= o.true_peak_dbtp);
		/* The file itself, as a player measures it: what the result says. */
		double decoded = decoded_lufs(&out);
		print_message("# decoded %.2f LUFS\n", decoded);
		assert_true(fabs(decoded - goal) <= 0.5);
		assert_true(fabs(decoded - res.output_lufs) <= 0.1);
		/* The decoded file's sample peak is under the ceiling too. */
		codec_stream_info info;
		float peak = 0;
		assert_true(decode_count(out.data, out.len, &info, &peak) > 0);
		print_message("# decoded sample peak %.2f dBFS\n", 20 * log10(peak));
		assert_true(20 * log10(peak) <= o.true_peak_dbtp);
		free(in.d);
		free(out.data);
	}
}

static void refusals(void **st)
{
	(void)st;
	codec_options o = fast_options();
	codec_buffer out;
	codec_result res;

	membuf shortclip = make_speechlike_wav(16000, 1, 0.3, 0.3);
	assert_int_equal(transcode_mem(&shortclip, &o, &out, &res), CODEC_ETOOSHORT);
	free(out.data);

	membuf silent = make_speechlike_wav(16000, 1, 2.0, 0.0);
	assert_int_equal(transcode_mem(&silent, &o, &out, &res), CODEC_ESILENT);
	assert_int_equal(out.len, 0);
	free(out.data);

	membuf clip = make_speechlike_wav(16000, 1, 3.0, 0.3);
	o.max_duration_ms = 1000;
	assert_int_equal(transcode_mem(&clip, &o, &out, &res), CODEC_ETOOLONG);
	assert_int_equal(out.len, 0);
	free(out.data);
	o = fast_options();
	o.max_input_bytes = 1000;
	assert_int_equal(transcode_mem(&clip, &o, &out, &res), CODEC_ETOOLARGE);
	free(out.data);
	o = fast_options();
	o.bitrate = 5000;
	assert_int_equal(transcode_mem(&clip, &o, &out, &res), CODEC_EINVAL);
	free(out.data);

	membuf junk = {(uint8_t *)strdup("hello, this is not audio at all"), 31};
	o = fast_options();
	assert_int_equal(transcode_mem(&junk, &o, &out, &res), CODEC_EFORMAT);
	free(out.data);
	free(junk.d);
	free(shortclip.d);
	free(silent.d);
	free(clip.d);
}

static void waveform_follows_the_signal(void **st)
{
	(void)st;
	/* One second of signal, one of silence: the first half of the waveform is drawn. */
	membuf a = make_speechlike_wav(48000, 1, 2.0, 0.3);
	float *pcm = (float *)(a.d + 44);
	for (size_t i = 48000; i < 96000; i++)
		pcm[i] = 0;
	codec_options o = fast_options();
	codec_buffer out;
	codec_result res;
	assert_int_equal(transcode_mem(&a, &o, &out, &res), 0);
	unsigned loud = 0, quiet = 0;
	for (int i = 0; i < 50; i++)
		loud += res.waveform[i] > 20;
	for (int i = 52; i < 100; i++)
		quiet += res.waveform[i] == 0;
	assert_true(loud >= 40);
	assert_int_equal(quiet, 48);
	free(a.d);
	free(out.data);
}

static void same_input_same_bytes(void **st)
{
	(void)st;
	membuf in = make_speechlike_wav(16000, 1, 1.5, 0.3);
	codec_options o = fast_options();
	codec_buffer a, b;
	codec_result ra, rb;
	assert_int_equal(transcode_mem(&in, &o, &a, &ra), 0);
	assert_int_equal(transcode_mem(&in, &o, &b, &rb), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	/* A random serial differs between files (probability of a clash: 2^-32). */
	o.serial_fixed = 0;
	codec_buffer c, d;
	assert_int_equal(transcode_mem(&in, &o, &c, &ra), 0);
	assert_int_equal(transcode_mem(&in, &o, &d, &rb), 0);
	assert_memory_not_equal(c.data + 14, d.data + 14, 4);
	free(in.d);
	free(a.data), free(b.data), free(c.data), free(d.data);
}

static void bitrate_option_scales_size(void **st)
{
	(void)st;
	membuf in = make_speechlike_wav(48000, 1, 4.0, 0.3);
	codec_options o = fast_options();
	codec_buffer lo, hi;
	codec_result r;
	o.bitrate = 12000;
	assert_int_equal(transcode_mem(&in, &o, &lo, &r), 0);
	o.bitrate = 64000;
	assert_int_equal(transcode_mem(&in, &o, &hi, &r), 0);
	assert_true(hi.len > 2 * lo.len);
	free(in.d), free(lo.data), free(hi.data);
}

/*
 * A headset with one capsule wired inverted: the channels' mean cancels. Exactly inverted it
 * was refused audio_silent; 3 dB quieter it came out at -23.7 LUFS (the gain cap), a residue.
 * Now the loudest channel is measured and encoded alone; in-phase and unrelated channels keep
 * the mean.
 */
static void antiphase_stereo_keeps_the_voice(void **st)
{
	(void)st;
	const struct {
		float right, dc; /* R = right * L + dc, L = speech + dc */
		size_t delay;    /* R from this many frames earlier (unrelated when large) */
		int want;        /* downmix_channel */
	} cases[] = {
	    {-1.0f, 0, 0, 0}, {-0.708f, 0, 0, 0},   {-1.0f, 0.2f, 0, 0},   {1.0f, 0, 0, -1},
	    {0.6f, 0, 0, -1}, {1.0f, 0, 11025, -1}, {-1.0f, 0, 11025, -1},
	};
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		membuf in = make_speechlike_wav(44100, 2, 4.0, 0.3);
		float *pcm = (float *)(in.d + 44);
		size_t frames = (in.n - 44) / 8;
		for (size_t i = frames; i-- > 0;) {
			float l = pcm[2 * i];
			float r = i >= cases[k].delay ? pcm[2 * (i - cases[k].delay)] : 0;
			pcm[2 * i] = l + cases[k].dc;
			pcm[2 * i + 1] = cases[k].right * r + cases[k].dc;
		}
		codec_options o = fast_options();
		codec_buffer out;
		codec_result res;
		assert_int_equal(transcode_mem(&in, &o, &out, &res), 0);
		print_message("# R = %g L (+%g, %zu late): channel %d, in %.2f out %.2f peak %.2f "
			      "fit passes %u\n",
			      cases[k].right, cases[k].dc, cases[k].delay, res.downmix_channel,
			      res.input_lufs, res.output_lufs, res.output_peak_dbtp,
			      res.fit_passes);
		assert_int_equal(res.downmix_channel, cases[k].want);
		assert_int_equal(res.fit_passes, cases[k].want < 0 ? 1 : 2);
		assert_true(fabs(res.output_lufs - o.target_lufs) <= 0.5);
		assert_true(res.output_peak_dbtp <= o.true_peak_dbtp);
		double decoded = decoded_lufs(&out);
		assert_true(fabs(decoded - o.target_lufs) <= 0.5);
		assert_true(fabs(decoded - res.output_lufs) <= 0.1);
		free(in.d);
		free(out.data);
	}
}

/*
 * A lone click in digital silence (a tap on a muted phone): its first encode came out at -33
 * LUFS, peaks on the ceiling; each retry limited it harder at a lower ceiling, which takes
 * loudness from a click, until the third decoded to nothing above the gate, was kept, and
 * reported the goal, -16 LUFS, for a file a player measures as silence. The file is the
 * loudest encode, and it says the loudness it has; a file with nothing above the gate is
 * audio_silent.
 */
static void a_lone_click_keeps_its_loudest_encode(void **st)
{
	(void)st;
	membuf in = make_speechlike_wav(48000, 1, 2.0, 0.0);
	float *pcm = (float *)(in.d + 44);
	pcm[48000] = 1.0f;
	codec_options o = fast_options();
	codec_buffer out;
	codec_result res;
	assert_int_equal(transcode_mem(&in, &o, &out, &res), 0);
	double got = decoded_lufs(&out);
	print_message("# click: in %.2f gain %.2f out %.2f (decoded %.2f) peak %.2f encodes %u\n",
	              res.input_lufs, res.gain_db, res.output_lufs, got, res.output_peak_dbtp,
	              res.encodes);
	assert_true(got > -40);
	assert_true(fabs(res.output_lufs - got) <= 0.5);
	assert_true(res.output_peak_dbtp <= o.true_peak_dbtp);
	free(out.data);
	/* A tone over Opus's band decodes to nothing above the gate: silence for a player, where
	 * the file was kept and said to be at -16 LUFS. */
	for (size_t i = 0; i < 96000; i++)
		pcm[i] = (float)(0.5 * sin(2 * M_PI * 23500 * i / 48000.0));
	assert_int_equal(transcode_mem(&in, &o, &out, &res), CODEC_ESILENT);
	free(in.d);
	free(out.data);
}

/*
 * Float samples may go far over full scale (the reader keeps up to +60 dBFS; an Opus header
 * gain goes further). When even the fit grid's quietest gain, -30 dB, left the clip over the
 * target, the gain chosen was the most pick_gain allows, 18 dB past the unlimited gain, and
 * the limiter crushed the voice by some 16 dB to meet the peak ceiling. Such a clip is now
 * brought down as a quiet one is brought up: on target, hardly limited.
 */
static void over_full_scale_is_not_crushed(void **st)
{
	(void)st;
	const double levels[] = {30.0, 100.0, 800.0}; /* about +19, +29 and +47 LUFS */
	for (size_t i = 0; i < 3; i++) {
		membuf in = make_speechlike_wav(48000, 1, 3.0, levels[i]);
		codec_options o = fast_options();
		codec_buffer out;
		codec_result res;
		assert_int_equal(transcode_mem(&in, &o, &out, &res), 0);
		print_message("# level %g: in %.2f gain %.2f limiter %.2f out %.2f peak %.2f\n",
		              levels[i], res.input_lufs, res.gain_db, res.limiter_max_db,
		              res.output_lufs, res.output_peak_dbtp);
		assert_true(res.input_lufs > 15);
		assert_true(res.limiter_max_db > -6);
		assert_true(fabs(res.output_lufs - o.target_lufs) <= 0.5);
		assert_true(res.output_peak_dbtp <= o.true_peak_dbtp);
		double decoded = decoded_lufs(&out);
		assert_true(fabs(decoded - o.target_lufs) <= 0.5);
		assert_true(fabs(decoded - res.output_lufs) <= 0.1);
		free(in.d);
		free(out.data);
	}
}

/* Mean energy of the decoded file's samples [from, to): what a player hears there. */
static double decoded_energy(const codec_buffer *out, size_t from, size_t to)
{
	codec_source src;
	codec_memory_source mem;
	codec_stream_info info;
	codec_decoder *dec = decode_open(out, &src, &mem, &info);
	static float pcm[4096];
	size_t got, pos = 0;
	double sum = 0;
	while (codec_decoder_read(dec, pcm, 4096, &got) == 0 && got > 0) {
		for (size_t i = 0; i < got; i++, pos++)
			if (pos >= from && pos < to)
				sum += (double)pcm[i] * pcm[i];
	}
	codec_decoder_close(dec);
	return sum / (double)(to - from);
}

/*
 * A whispered bedtime story, then a cough (a loud burst): the cough sets the clip's loudness,
 * and the whisper could reach the target only with the cough crushed far past the 18 dB
 * (FIT_MAX_EXTRA_DB) the fit allows, so the gain stops there and the clip stays quieter. The
 * retries, each limiting at a lower ceiling that the output gain then made up, went past that
 * bound by as much as they lowered the ceiling: here the whisper, and a room's noise with it,
 * came out 30.4 dB louder than it went in (the cough limited by 34 dB) where the bound is
 * 20.7 (the tool: a whisper at -54.5 LUFS then a cough raised 46 dB, the same whisper alone
 * 24). The gain on what the limiter leaves alone, as a player hears it, is at most 18 dB past
 * what reaches the goal unlimited, and the 2 dB of the ceiling's margin the output gain gives
 * back (0.5 for the codec).
 */
static void a_cough_does_not_lift_the_whisper_past_the_bound(void **st)
{
	(void)st;
	membuf in = make_speechlike_wav(48000, 1, 8.0, 0.01);
	float *pcm = (float *)(in.d + 44);
	uint32_t seed = 7;
	for (size_t i = 0; i < 12000; i++) { /* 0.25 s of noise at 4 s, faded out */
		seed = seed * 1664525u + 1013904223u;
		float r = (float)(seed >> 8) / 8388608.0f - 1.0f;
		pcm[192000 + i] = 0.5f * r * (float)(12000 - i) / 12000.0f;
	}
	double in_energy = 0;
	for (size_t i = 0; i < 144000; i++)
		in_energy += (double)pcm[i] * pcm[i];
	in_energy /= 144000;
	codec_options o = fast_options();
	codec_buffer out;
	codec_result res;
	assert_int_equal(transcode_mem(&in, &o, &out, &res), 0);
	double goal = fmin(o.target_lufs, res.input_lufs + o.max_gain_db);
	double heard = 10 * log10(decoded_energy(&out, 0, 144000) / in_energy);
	print_message("# whisper and cough: in %.2f gain %.2f header %.2f limiter %.2f out %.2f "
	              "peak %.2f encodes %u; the whisper raised %.2f dB, goal - in %.2f\n",
	              res.input_lufs, res.gain_db, res.header_gain_db, res.limiter_max_db,
	              res.output_lufs, res.output_peak_dbtp, res.encodes, heard,
	              goal - res.input_lufs);
	assert_true(heard <= goal - res.input_lufs + 18 + 2 + 0.5);
	assert_true(res.gain_db + res.header_gain_db <= goal - res.input_lufs + 18 + 2 + 0.5);
	assert_true(res.output_peak_dbtp <= o.true_peak_dbtp);
	assert_true(fabs(decoded_lufs(&out) - res.output_lufs) <= 0.1);
	free(in.d);
	free(out.data);
}

static double cpu_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/*
 * A voice then silence made of denormal numbers (a float editor's fade-out or reverb tail, or
 * a crafted upload) costs no more than a voice then quiet noise. Every filter stage worked on
 * denormals, each operation on them dozens of times slower: 60 s of 44.1 kHz stereo whose last
 * 54 s were such took 5.5x the time of the same clip with noise there (3.5 s against 0.65 s in
 * a release build), and digital zeros after a voice 2.4x, the IIR stages' states decaying
 * through them. CPU time of this thread, medians of three interleaved runs; the caller's
 * floating-point mode is as it was.
 */
static void silence_after_a_voice_is_not_slow(void **st)
{
	(void)st;
	membuf zeros = make_speechlike_wav(44100, 2, 12.0, 0.3);
	membuf noise = {malloc(zeros.n), zeros.n};
	memcpy(noise.d, zeros.d, zeros.n);
	float *z = (float *)(zeros.d + 44), *q = (float *)(noise.d + 44);
	uint32_t seed = 1;
	for (size_t i = 44100 * 2 * 3 / 2; i < (zeros.n - 44) / 4; i++) {
		seed = seed * 1664525u + 1013904223u;
		float r = (float)(seed >> 8) / 8388608.0f - 1.0f;
		z[i] = 1e-39f * r; /* denormal: a float editor's fade-out or reverb tail */
		q[i] = 1e-5f * r;
	}
#if defined(__x86_64__)
	unsigned mode = _mm_getcsr();
#endif
	double t[2][3];
	for (int run = 0; run < 3; run++) {
		for (int k = 0; k < 2; k++) {
			codec_options o = fast_options();
			codec_buffer out;
			codec_result res;
			double t0 = cpu_seconds();
			assert_int_equal(transcode_mem(k ? &noise : &zeros, &o, &out, &res), 0);
			t[k][run] = cpu_seconds() - t0;
			assert_true(fabs(res.output_lufs - o.target_lufs) <= 0.5);
			free(out.data);
		}
	}
#if defined(__x86_64__)
	assert_int_equal(_mm_getcsr(), mode);
#endif
	qsort(t[0], 3, sizeof t[0][0], cmp_double);
	qsort(t[1], 3, sizeof t[1][0], cmp_double);
	print_message("# silence %.3f s, noise %.3f s (CPU, medians of 3)\n", t[0][1], t[1][1]);
	assert_true(t[0][1] <= 2 * t[1][1]);
	free(zeros.d);
	free(noise.d);
}

static void error_names_are_stable_and_distinct(void **st)
{
	(void)st;
	assert_string_equal(codec_errcode(CODEC_ETOOSHORT), "audio_too_short");
	assert_string_equal(codec_errcode(CODEC_ESILENT), "audio_silent");
	assert_string_equal(codec_errcode(CODEC_EFORMAT), "audio_unrecognized");
	for (int i = 0; i < CODEC_ERROR_COUNT; i++) {
		assert_non_null(codec_strerror(-i));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(codec_errcode(-i), codec_errcode(-j));
	}
	assert_string_equal(codec_errcode(-1000), "unknown_error");
	assert_string_equal(codec_errcode(5), "unknown_error");
	/* The input's faults, and ours: an upload keeps its bytes and hears 503 on the latter. */
	static const int input[] = {CODEC_EFORMAT,   CODEC_EUNSUPPORTED, CODEC_ETRUNCATED,
				    CODEC_EMALFORMED, CODEC_ECORRUPT,    CODEC_ERATE,
				    CODEC_ECHANNELS,  CODEC_ETOOSHORT,   CODEC_ETOOLONG,
				    CODEC_ETOOLARGE,  CODEC_ESILENT};
	static const int ours[] = {CODEC_OK, CODEC_ENOMEM, CODEC_EIO, CODEC_EINVAL, CODEC_EENCODE};
	for (size_t i = 0; i < sizeof input / sizeof input[0]; i++)
		assert_int_equal(codec_err_is_input(input[i]), 1);
	for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
		assert_int_equal(codec_err_is_input(ours[i]), 0);
	assert_int_equal((int)(sizeof input / sizeof input[0] + sizeof ours / sizeof ours[0]),
			 CODEC_ERROR_COUNT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(durations_are_exact),
	    cmocka_unit_test(loudness_and_peak_on_target),
	    cmocka_unit_test(refusals),
	    cmocka_unit_test(waveform_follows_the_signal),
	    cmocka_unit_test(same_input_same_bytes),
	    cmocka_unit_test(bitrate_option_scales_size),
	    cmocka_unit_test(antiphase_stereo_keeps_the_voice),
	    cmocka_unit_test(a_lone_click_keeps_its_loudest_encode),
	    cmocka_unit_test(over_full_scale_is_not_crushed),
	    cmocka_unit_test(a_cough_does_not_lift_the_whisper_past_the_bound),
	    cmocka_unit_test(silence_after_a_voice_is_not_slow),
	    cmocka_unit_test(error_names_are_stable_and_distinct),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
