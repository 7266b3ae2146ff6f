/*
 * kws-sim: a simulated Arduino board. Runs an AVR firmware (.elf or .hex) on simavr and
 * connects UART0 to a pseudo-terminal, so a host program talks to it with pyserial exactly
 * as it would talk to a real board.
 *
 *   kws-sim [--mcu atmega328p] [--freq 16000000] [--stamps FILE] [--port-file FILE]
 *           [--realtime] [--wait-input] [--max-cycles N] [-v] firmware.elf|firmware.hex
 *   kws-sim --boot bootloader.hex [--dump-flash FILE] [options] [firmware.elf|.hex]
 *
 * stdout: exactly one line, the pty path (e.g. /dev/pts/7), then stdout is closed; anything
 *         libsimavr prints goes to stderr (fd 1 is redirected there), never to the data path.
 * stderr: diagnostics, and a one-line summary at exit (cycles, wall time, speed).
 * --stamps FILE: one line "GPIOR<n> <value> <cycle>" per firmware write to GPIOR0/1/2,
 *         "P<port><bit> <level> <cycle>" (e.g. "PB5 1 123456") each time a port write changes
 *         the level of an output pin of port B, C or D (the detection pin: an LED), and
 *         "HOST <nbytes> <cycle>" each time bytes arrive from the host. Flushed before any
 *         UART byte reaches the pty, so once the host has read a reply, every stamp written
 *         before that reply is in the file.
 * --wait-input: do not start the CPU until the host has sent a byte (a deterministic way
 *         to test that bytes sent before the firmware enables RX are kept).
 * --realtime: throttle the simulation to the wall clock (simavr is ~8x faster).
 *
 * --boot HEX: a board with a bootloader (optiboot for the Uno: kws.simboard.optiboot_hex();
 *         the optiboot_atmega328.hex Debian ships does not fit its boot section, see
 *         firmware/ports/avr/sim/Makefile), so that the real avrdude flashes it through the pty
 *         (avrdude -c arduino -P <pty>):
 *         - the bootloader is loaded at the addresses in its hex file (optiboot: byte address
 *           0x7E00) and the CPU starts there, as with the BOOTRST fuse; every reset (e.g.
 *           the watchdog reset optiboot uses to leave) starts there again (simavr reset_pc);
 *         - MCUSR = EXTRF at start: the board has just been reset through its RESET pin,
 *           which is what avrdude's DTR pulse does on a real Uno. (simavr sets PORF, and
 *           optiboot starts the application at once after a power-on reset.)
 *         - the whole flash is writable and executable (codeend = end of flash); SPM page
 *           erase / fill / write go through simavr's avr_flash module, so what the
 *           bootloader writes stays in the simulated flash across resets;
 *         - implies --realtime: the bootloader's watchdog timeouts (1 s, 16 ms) and
 *           avrdude's serial timeouts must see the same clock;
 *         - the optional firmware is loaded first (a board that was flashed before).
 *         A pty has no DTR line (avrdude's TIOCMGET/TIOCMSET fail with ENOTTY, which it
 *         reports and ignores), so the simulator cannot see avrdude's reset pulse: start it
 *         right before avrdude, with --wait-input to hold the board in reset until
 *         avrdude's first byte (STK_GET_SYNC) arrives; bytes are kept while the bootloader
 *         sets up its UART (see above), so the handshake is deterministic.
 *         stderr gets one line per reset ("kws-sim: reset ...") and one when the CPU leaves
 *         the bootloader ("kws-sim: application started ..."), for a host to wait on.
 * --dump-flash FILE: at exit, write the whole flash (raw binary, flashend + 1 bytes).
 *
 * Exit: 0 after SIGTERM/SIGINT, --max-cycles, or EOF on a stdin pipe (the parent died);
 *       1 usage or load error; 2 firmware crashed; 3 firmware stopped (sleep with cli).
 *
 * Single-threaded: the simulation loop services the pty every SERVICE_CYCLES cycles with
 * non-blocking reads and writes. Plain C99 + POSIX (openpty from libutil).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_hex.h"
#include "sim_io.h"
#include "sim_irq.h"
#include "sim_time.h"
#include "avr_uart.h"
#include "avr_ioport.h"

/* 1 byte at 115200 baud is ~1500 cycles at 16 MHz and simavr's UART input fifo holds 64
 * bytes, so servicing every 4096 cycles keeps the line full at any baud rate while the
 * syscall cost stays small. */
#define SERVICE_CYCLES 4096
#define IN_CAP (64 * 1024)       /* host -> AVR bytes waiting for XON */
#define OUT_MAX (4 * 1024 * 1024) /* AVR -> host bytes the host has not read yet */

/* GPIOR0..2 of the ATmega328P, as data-space addresses (I/O address + 0x20) */
static const avr_io_addr_t gpior_addr[3] = { 0x3E, 0x4A, 0x4B };

static volatile sig_atomic_t g_signal;
static int g_verbose = LOG_ERROR;

typedef struct bridge {
	avr_t *avr;
	avr_irq_t *uart_in;      /* raise with a byte to feed UART0 */
	avr_uart_t *uart;        /* UART0 itself, to see whether it is busy */
	int master, slave;       /* pty; we keep the slave open so the pty never hangs up */
	char port[128];

	uint8_t in[IN_CAP];      /* ring buffer, host -> AVR */
	size_t in_head, in_len;
	int xon;                 /* UART0 can take bytes (simavr's XON/XOFF IRQs) */
	int feeding;

	uint8_t *out;            /* AVR -> host, written to the pty in service() */
	size_t out_len, out_cap, out_dropped;

	FILE *stamps;
	uint64_t nstamps;

	int realtime;
	int watch_stdin;

	/* --boot */
	int boot;
	avr_flashaddr_t boot_start;    /* lowest byte address of the bootloader */
	int in_app;                    /* the CPU left the bootloader since the last reset */
	int reset_seen;                /* set by reset_hook, reported by the main loop */
	unsigned resets;
	void (*core_reset)(struct avr_t *avr);
	avr_cycle_count_t sleep_acc;   /* sleep cycles not yet waited for */
	struct timespec t0;
} bridge_t;

static bridge_t B;

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - B.t0.tv_sec) + (t.tv_nsec - B.t0.tv_nsec) * 1e-9;
}

static void on_signal(int sig) { g_signal = sig; }

/* simavr's logger, to stderr, filtered by -v */
static void logger(avr_t *avr, const int level, const char *fmt, va_list ap)
{
	(void)avr;
	if (level <= g_verbose) {
		fputs("simavr: ", stderr);
		vfprintf(stderr, fmt, ap);
	}
}

/* ---- host -> AVR ---------------------------------------------------------------------- */

/* Feed buffered bytes while UART0 says XON. Raising UART_IRQ_INPUT can call our XOFF hook
 * re-entrantly (the fifo just filled), which stops the loop; the byte that triggered it
 * was accepted. Bytes raised while RX is disabled are silently dropped by simavr, which is
 * why nothing is sent before the first XON. */
static void feed(bridge_t *b)
{
	if (b->feeding)
		return;
	b->feeding = 1;
	while (b->xon && b->in_len) {
		uint8_t c = b->in[b->in_head];
		b->in_head = (b->in_head + 1) % IN_CAP;
		b->in_len--;
		avr_raise_irq(b->uart_in, c);
	}
	b->feeding = 0;
}

/* XON is raised repeatedly (on UDR/UCSRA reads with an empty fifo, and when RXEN is set). */
static void xon_hook(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq; (void)value;
	bridge_t *b = param;
	b->xon = 1;
	feed(b);
}

/* XOFF is a filtered IRQ: 1 when the fifo is full or RX got disabled, 0 just before XON. */
static void xoff_hook(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	bridge_t *b = param;
	if (value)
		b->xon = 0;
}

static void read_host(bridge_t *b)
{
	while (b->in_len < IN_CAP) {
		size_t tail = (b->in_head + b->in_len) % IN_CAP;
		size_t room = (tail >= b->in_head ? IN_CAP - tail : b->in_head - tail);
		if (room > IN_CAP - b->in_len)
			room = IN_CAP - b->in_len;
		ssize_t n = read(b->master, b->in + tail, room);
		if (n <= 0)
			break; /* EAGAIN: nothing more; EIO cannot happen while we hold the slave */
		b->in_len += (size_t)n;
		if (b->stamps)
			fprintf(b->stamps, "HOST %zd %" PRIu64 "\n", n, (uint64_t)b->avr->cycle);
	}
}

/* ---- AVR -> host ---------------------------------------------------------------------- */

static void uart_out_hook(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	bridge_t *b = param;
	if (b->out_len == b->out_cap) {
		if (b->out_cap >= OUT_MAX) {
			b->out_dropped++;
			return;
		}
		b->out_cap = b->out_cap ? 2 * b->out_cap : 4096;
		b->out = realloc(b->out, b->out_cap);
		if (!b->out) {
			perror("kws-sim: realloc");
			exit(1);
		}
	}
	b->out[b->out_len++] = (uint8_t)value;
}

static void write_host(bridge_t *b)
{
	if (b->stamps)
		fflush(b->stamps);      /* stamps before the bytes that follow them */
	size_t done = 0;
	while (done < b->out_len) {
		ssize_t n = write(b->master, b->out + done, b->out_len - done);
		if (n <= 0)
			break;              /* EAGAIN: the host is not reading; keep the rest */
		done += (size_t)n;
	}
	if (done) {
		memmove(b->out, b->out + done, b->out_len - done);
		b->out_len -= done;
	}
}

/* ---- GPIOR stamps --------------------------------------------------------------------- */

/* avr->cycle is the cycle count at the start of the OUT/STS instruction doing the write
 * (simavr adds the instruction's cycles after executing it). */
static void gpior_hook(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
	bridge_t *b = param;
	avr_core_watch_write(avr, addr, v); /* keep the register readable by the firmware */
	if (b->stamps) {
		int n = addr == gpior_addr[0] ? 0 : addr == gpior_addr[1] ? 1 : 2;
		fprintf(b->stamps, "GPIOR%d %u %" PRIu64 "\n", n, v, (uint64_t)avr->cycle);
	}
	b->nstamps++;
}

/* ---- output pins ----------------------------------------------------------------------- */

/* simavr's I/O port module raises a pin's IRQ from its PORTx/DDRx write handler with the
 * pin's new output level (on every write, changed or not): stamp the changes. */
static const char pin_ports[] = "BCD";
static uint8_t pin_level[3][8];

static void pin_hook(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	bridge_t *b = &B;
	uintptr_t id = (uintptr_t)param;   /* port index * 8 + bit */
	uint8_t level = value ? 1 : 0;
	if (pin_level[id / 8][id % 8] == level)
		return;
	pin_level[id / 8][id % 8] = level;
	if (b->stamps)
		fprintf(b->stamps, "P%c%u %u %" PRIu64 "\n", pin_ports[id / 8], (unsigned)(id % 8),
		        level, (uint64_t)b->avr->cycle);
	b->nstamps++;
}

static void watch_pins(avr_t *avr)
{
	for (uintptr_t port = 0; port < 3; port++)
		for (uintptr_t bit = 0; bit < 8; bit++) {
			avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(pin_ports[port]),
			                               (int)(IOPORT_IRQ_PIN0 + bit));
			if (irq)
				avr_irq_register_notify(irq, pin_hook, (void *)(port * 8 + bit));
		}
}

/* ---- time ----------------------------------------------------------------------------- */

/* Wait up to usec for host input (or a signal). Waits on the pty only if we could store
 * what arrives, so a full buffer does not turn this into a busy loop. */
static void wait_host(bridge_t *b, long usec)
{
	struct timespec ts = { usec / 1000000, (usec % 1000000) * 1000 };
	struct pollfd p = { b->master, POLLIN, 0 };
	ppoll(&p, b->in_len < IN_CAP ? 1 : 0, &ts, NULL);
}

/* UART0 is quiet: no host byte waiting, none in simavr's receive fifo, none being sent.
 * (Output the host has not read yet does not count: the firmware is not waiting for it.)
 * Reads avr_uart_t fields from Debian's avr_uart.h, which matches its libsimavr. */
static int uart_quiet(bridge_t *b)
{
	avr_uart_t *u = b->uart;
	return b->in_len == 0 &&
	       (!u || (u->input.read == u->input.write && u->tx_cnt == 0));
}

/* Replaces simavr's sleep callback (which always usleep()s). A firmware that sleeps while
 * the UART is busy is waiting for the next byte: fast-forward. One that sleeps while the UART
 * is quiet is waiting for the host: let simulated time pass in real time (accumulated to
 * >= 1 ms per wait), but return as soon as host input arrives. So an idle firmware that
 * sleeps costs ~no host CPU; one that spins in loop() costs a full core. */
static void sleep_hook(avr_t *avr, avr_cycle_count_t howlong)
{
	bridge_t *b = &B;
	write_host(b);
	if (!uart_quiet(b)) {
		b->sleep_acc = 0;
		return;
	}
	b->sleep_acc += howlong;
	if (b->sleep_acc < avr->frequency / 1000)
		return;
	long usec = (long)avr_cycles_to_usec(avr, b->sleep_acc);
	b->sleep_acc = 0;
	wait_host(b, usec);
}

/* --realtime: never run ahead of the wall clock by more than 1 ms */
static void throttle(bridge_t *b)
{
	double ahead = (double)b->avr->cycle / b->avr->frequency - now_s();
	if (ahead > 0.001)
		wait_host(b, (long)(ahead * 1e6));
}

/* EOF on a stdin pipe: whoever started us has gone */
static int stdin_closed(void)
{
	char buf[256];
	ssize_t n = read(0, buf, sizeof buf);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static void service(bridge_t *b)
{
	write_host(b);
	read_host(b);
	feed(b);
	if (b->realtime)
		throttle(b);
}

/* ---- --boot: resets and the bootloader ----------------------------------------------- */

/* Wraps the core's reset callback (avr_reset(), called by the watchdog when it fires with
 * WDE set, as optiboot makes it do to start the application). A reset disables the UART's
 * receiver, so stop feeding bytes until the next firmware enables it and simavr says XON
 * again (simavr drops bytes raised while RX is off). */
static void reset_hook(avr_t *avr)
{
	if (B.core_reset)
		B.core_reset(avr);
	B.xon = 0;
	B.in_app = 0;
	B.reset_seen = 1;
	B.resets++;
}

static uint8_t mcusr(avr_t *avr)
{
	return avr->data[avr->reset_flags.extrf.reg];
}

/* Called from the main loop after a reset: say why it happened (MCUSR bits, after simavr's
 * watchdog module set WDRF) */
static void report_reset(bridge_t *b)
{
	avr_t *avr = b->avr;
	uint8_t r = mcusr(avr);
	const char *why = avr_regbit_get(avr, avr->reset_flags.wdrf) ? "watchdog" :
	                  avr_regbit_get(avr, avr->reset_flags.extrf) ? "external" :
	                  avr_regbit_get(avr, avr->reset_flags.borf) ? "brown-out" :
	                  avr_regbit_get(avr, avr->reset_flags.porf) ? "power-on" : "?";
	fprintf(stderr, "kws-sim: reset (%s, MCUSR 0x%02x) at cycle %" PRIu64 ", PC 0x%04x\n",
	        why, r, (uint64_t)avr->cycle, (unsigned)avr->pc);
	b->reset_seen = 0;
}

static int load_boot(avr_t *avr, const char *path)
{
	ihex_chunk_p chunks = NULL;
	int n = read_ihex_chunks(path, &chunks);
	if (n <= 0) {
		fprintf(stderr, "kws-sim: cannot read bootloader %s\n", path);
		return -1;
	}
	uint32_t lo = UINT32_MAX, hi = 0;
	for (int i = 0; i < n; i++) {
		if (chunks[i].baseaddr >= 0x800000) /* eeprom/fuses/lock bits */
			continue;
		if (chunks[i].baseaddr + chunks[i].size > avr->flashend + 1) {
			fprintf(stderr, "kws-sim: %s: 0x%x..0x%x is outside the flash (0..0x%x)\n", path,
			        (unsigned)chunks[i].baseaddr,
			        (unsigned)(chunks[i].baseaddr + chunks[i].size), (unsigned)avr->flashend);
			free_ihex_chunks(chunks);
			return -1;
		}
		avr_loadcode(avr, chunks[i].data, chunks[i].size, chunks[i].baseaddr);
		if (chunks[i].baseaddr < lo)
			lo = chunks[i].baseaddr;
		if (chunks[i].baseaddr + chunks[i].size > hi)
			hi = chunks[i].baseaddr + chunks[i].size;
	}
	free_ihex_chunks(chunks);
	if (lo == UINT32_MAX) {
		fprintf(stderr, "kws-sim: %s holds no flash data\n", path);
		return -1;
	}
	if (!avr->reset_flags.extrf.reg) {
		fprintf(stderr, "kws-sim: simavr's %s core has no MCUSR reset flags\n", avr->mmcu);
		return -1;
	}
	B.boot_start = lo;
	avr->reset_pc = lo;              /* BOOTRST: every reset starts the bootloader */
	avr->pc = lo;
	avr->codeend = avr->flashend + 1;
	/* avr_init() set PORF; an external reset (avrdude's DTR pulse) leaves EXTRF only */
	avr->data[avr->reset_flags.extrf.reg] = 0;
	avr_regbit_set(avr, avr->reset_flags.extrf);
	B.core_reset = avr->reset;
	avr->reset = reset_hook;
	fprintf(stderr, "kws-sim: bootloader %s at 0x%04x..0x%04x, MCUSR 0x%02x\n", path,
	        (unsigned)lo, (unsigned)hi, mcusr(avr));
	return 0;
}

static int dump_flash(avr_t *avr, const char *path)
{
	FILE *f = fopen(path, "wb");
	size_t n = (size_t)avr->flashend + 1;
	if (!f || fwrite(avr->flash, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "kws-sim: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- set-up --------------------------------------------------------------------------- */

static int load_firmware(avr_t *avr, const char *path, uint32_t freq)
{
	elf_firmware_t fw;
	memset(&fw, 0, sizeof fw);
	size_t len = strlen(path);
	if (len > 4 && strcmp(path + len - 4, ".hex") == 0) {
		ihex_chunk_p chunks = NULL;
		int n = read_ihex_chunks(path, &chunks);
		if (n <= 0) {
			fprintf(stderr, "kws-sim: cannot read %s\n", path);
			return -1;
		}
		for (int i = 0; i < n; i++) {
			if (chunks[i].baseaddr >= 0x800000) /* eeprom/fuses: not in our hex files */
				continue;
			avr_loadcode(avr, chunks[i].data, chunks[i].size, chunks[i].baseaddr);
			if (chunks[i].baseaddr + chunks[i].size > avr->codeend)
				avr->codeend = chunks[i].baseaddr + chunks[i].size;
		}
		free_ihex_chunks(chunks);
		avr->frequency = freq;
		return 0;
	}
	if (elf_read_firmware(path, &fw) != 0) {
		fprintf(stderr, "kws-sim: cannot read %s\n", path);
		return -1;
	}
	fw.frequency = freq; /* avr_load_firmware() applies it */
	avr_load_firmware(avr, &fw);
	return 0;
}

static int open_pty(bridge_t *b)
{
	if (openpty(&b->master, &b->slave, b->port, NULL, NULL) < 0) {
		fprintf(stderr, "kws-sim: openpty: %s\n", strerror(errno));
		return -1;
	}
	/* raw: no echo, no CR/LF translation, binary safe (pyserial sets this again on open) */
	struct termios tio;
	tcgetattr(b->slave, &tio);
	cfmakeraw(&tio);
	tcsetattr(b->slave, TCSANOW, &tio);
	fcntl(b->master, F_SETFL, fcntl(b->master, F_GETFL) | O_NONBLOCK);
	fcntl(b->master, F_SETFD, FD_CLOEXEC);
	fcntl(b->slave, F_SETFD, FD_CLOEXEC);
	return 0;
}

static int connect_uart(bridge_t *b)
{
	avr_t *avr = b->avr;
	/* STDIO: simavr would print UART lines on the console; POLL_SLEEP: it would usleep(1)
	 * on every UCSR0A poll, which slows a busy Serial loop down a lot. */
	uint32_t flags = 0;
	avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
	flags &= ~(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);

	avr_irq_t *out = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT);
	avr_irq_t *xon = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON);
	avr_irq_t *xoff = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF);
	b->uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	if (!out || !xon || !xoff || !b->uart_in) {
		fprintf(stderr, "kws-sim: this MCU has no UART0\n");
		return -1;
	}
	for (avr_io_t *io = avr->io_port; io; io = io->next)
		if (io->kind && !strcmp(io->kind, "uart") && ((avr_uart_t *)io)->name == '0')
			b->uart = (avr_uart_t *)io;
	avr_irq_register_notify(out, uart_out_hook, b);
	avr_irq_register_notify(xon, xon_hook, b);
	avr_irq_register_notify(xoff, xoff_hook, b);
	return 0;
}

static const char *state_name(int s)
{
	static const char *names[] = { "limbo", "stopped", "running", "sleeping", "step",
		"step-done", "done", "crashed" };
	return s >= 0 && s < (int)(sizeof names / sizeof *names) ? names[s] : "?";
}

static void usage(void)
{
	fputs("usage: kws-sim [--mcu NAME] [--freq HZ] [--stamps FILE] [--port-file FILE]\n"
	      "               [--realtime] [--wait-input] [--max-cycles N] [-v]\n"
	      "               firmware.elf|firmware.hex\n"
	      "       kws-sim --boot bootloader.hex [--dump-flash FILE] [options]\n"
	      "               [firmware.elf|firmware.hex]\n",
	      stderr);
}

int main(int argc, char **argv)
{
	const char *mcu = "atmega328p", *fw_path = NULL, *stamps_path = NULL, *port_file = NULL;
	const char *boot_path = NULL, *dump_path = NULL;
	uint32_t freq = 16000000;
	uint64_t max_cycles = 0;
	int wait_input = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int more = i + 1 < argc;
		if (!strcmp(a, "--mcu") && more) mcu = argv[++i];
		else if (!strcmp(a, "--freq") && more) freq = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (!strcmp(a, "--stamps") && more) stamps_path = argv[++i];
		else if (!strcmp(a, "--port-file") && more) port_file = argv[++i];
		else if (!strcmp(a, "--max-cycles") && more) max_cycles = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(a, "--boot") && more) boot_path = argv[++i];
		else if (!strcmp(a, "--dump-flash") && more) dump_path = argv[++i];
		else if (!strcmp(a, "--realtime")) B.realtime = 1;
		else if (!strcmp(a, "--wait-input")) wait_input = 1;
		else if (!strcmp(a, "-v")) g_verbose++;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
		else if (a[0] == '-' || fw_path) { usage(); return 1; }
		else fw_path = a;
	}
	if ((!fw_path && !boot_path) || freq == 0) {
		usage();
		return 1;
	}
	if (boot_path)
		B.realtime = 1; /* see --boot above */

	/* Our stdout carries only the pty path; route libsimavr's printf()s to stderr. */
	int data_fd = dup(1);
	dup2(2, 1);
	FILE *data = fdopen(data_fd, "w");

	struct stat st;
	B.watch_stdin = fstat(0, &st) == 0 && S_ISFIFO(st.st_mode);
	if (B.watch_stdin)
		fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	avr_global_logger_set(logger);
	avr_t *avr = avr_make_mcu_by_name(mcu);
	if (!avr) {
		fprintf(stderr, "kws-sim: unknown MCU %s\n", mcu);
		return 1;
	}
	avr_init(avr);
	avr->log = g_verbose > LOG_DEBUG ? LOG_DEBUG : g_verbose;
	B.avr = avr;
	avr->frequency = freq;
	if (fw_path && load_firmware(avr, fw_path, freq) < 0)
		return 1;
	if (boot_path) {
		B.boot = 1;
		if (load_boot(avr, boot_path) < 0)
			return 1;
	}
	avr->sleep = sleep_hook;

	if (stamps_path) {
		B.stamps = fopen(stamps_path, "w");
		if (!B.stamps) {
			fprintf(stderr, "kws-sim: %s: %s\n", stamps_path, strerror(errno));
			return 1;
		}
	}
	for (int i = 0; i < 3; i++)
		avr_register_io_write(avr, gpior_addr[i], gpior_hook, &B);
	watch_pins(avr);

	if (open_pty(&B) < 0 || connect_uart(&B) < 0)
		return 1;
	if (port_file) {
		FILE *f = fopen(port_file, "w");
		if (!f || fprintf(f, "%s\n", B.port) < 0 || fclose(f) != 0) {
			fprintf(stderr, "kws-sim: %s: %s\n", port_file, strerror(errno));
			return 1;
		}
	}
	fprintf(data, "%s\n", B.port);
	fclose(data);

	while (wait_input && !g_signal && B.in_len == 0) {
		wait_host(&B, 100000);
		read_host(&B);
		if (B.watch_stdin && stdin_closed())
			g_signal = SIGHUP;
	}

	clock_gettime(CLOCK_MONOTONIC, &B.t0);
	avr_cycle_count_t next_service = 0;
	unsigned services = 0;
	int state = avr->state, rc = 0;
	avr_flashaddr_t pc = 0;   /* of the last instruction, for the crash report */
	const char *why = "signal";
	for (;;) {
		pc = avr->pc;
		state = avr_run(avr);
		if (state == cpu_Done || state == cpu_Crashed)
			break;
		if (B.boot) {
			if (B.reset_seen)
				report_reset(&B);
			if (!B.in_app && avr->pc < B.boot_start) {
				B.in_app = 1;
				fprintf(stderr, "kws-sim: application started (PC 0x%04x) at cycle %"
				        PRIu64 ", MCUSR 0x%02x\n", (unsigned)avr->pc, (uint64_t)avr->cycle,
				        mcusr(avr));
			}
		}
		if (avr->cycle < next_service)
			continue;
		next_service = avr->cycle + SERVICE_CYCLES;
		service(&B);
		if (g_signal)
			break;
		if (max_cycles && avr->cycle >= max_cycles) {
			why = "--max-cycles";
			break;
		}
		if (B.watch_stdin && (++services & 255) == 0 && stdin_closed()) {
			why = "stdin closed";
			break;
		}
	}
	write_host(&B);
	if (B.stamps)
		fclose(B.stamps);

	double wall = now_s();
	double sim = (double)avr->cycle / avr->frequency;
	if (state == cpu_Crashed) {
		fprintf(stderr, "kws-sim: firmware crashed (simavr state %s) at PC 0x%04x (byte "
		        "address), cycle %" PRIu64 "\n", state_name(state), (unsigned)pc,
		        (uint64_t)avr->cycle);
		rc = 2;
	} else if (state == cpu_Done) {
		fprintf(stderr, "kws-sim: firmware stopped (simavr state %s: sleep with interrupts "
		        "off) at PC 0x%04x, cycle %" PRIu64 "\n", state_name(state),
		        (unsigned)pc, (uint64_t)avr->cycle);
		rc = 3;
	}
	if (dump_path && dump_flash(avr, dump_path) < 0 && !rc)
		rc = 1;
	if (B.out_dropped)
		fprintf(stderr, "kws-sim: %zu output bytes dropped (host not reading)\n", B.out_dropped);
	fprintf(stderr, "kws-sim: %s after %" PRIu64 " cycles (%.3f s simulated) in %.3f s wall: "
	        "%.1f Mcycles/s, %.2fx real time, %" PRIu64 " stamps\n",
	        rc ? "exit" : why, (uint64_t)avr->cycle, sim, wall,
	        wall > 0 ? avr->cycle / wall / 1e6 : 0.0, wall > 0 ? sim / wall : 0.0, B.nstamps);
	avr_terminate(avr);
	close(B.master);
	close(B.slave);
	return rc;
}
