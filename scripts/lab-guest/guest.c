/* The lab guest: a no-OS program that dirties memory at a chosen rate and checks that every page
 * holds what it last wrote there, so a migration that loses a dirty page is seen.
 *
 * Kernel command line (libvirt <cmdline>): dirty=<MiB/s> ws=<MiB>
 *   dirty  pages written per second, in MiB (0: write once, then only read back every second)
 *   ws     working set, from 16 MiB up
 *   corrupt  pages to spoil after the first write (0), to show that the check sees them
 *   park   1: write the working set once, report, then halt with interrupts off (no CPU used;
 *          for nested hosts under TCG, where a polling guest would take a whole host CPU)
 *
 * Every page of the working set carries a generation in its first word and a check value
 * derived from generation and page number in its last word. The guest sweeps the working set
 * in order: before it writes generation g into a page, the page must hold g - 1 (or, when idle,
 * the one generation written). Anything else counts as an error.
 *
 * Once a second it writes a line on COM1:
 *   lab-guest tick=<n> generation=<g> dirty=<MiB/s> achieved=<MiB/s> checked=<pages> errors=<n>
 *
 * Time comes from the TSC, measured against the PIT at start. No interrupts are used: the
 * guest paces itself by polling the TSC (it keeps one host CPU busy while it runs). */

typedef unsigned int u32;
typedef unsigned long long u64;

#define PAGE_WORDS 1024u
#define WORKING_SET_START 0x01000000u /* 16 MiB */
#define COM1 0x3F8

static inline void outb(unsigned short port, unsigned char value) {
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline unsigned char inb(unsigned short port) {
    unsigned char value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static inline u64 rdtsc(void) {
    u32 low, high;
    __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
    return ((u64)high << 32) | low;
}

/* n / d without libgcc: two 32-bit divisions. */
static u64 divide(u64 n, u32 d) {
    u32 high = (u32)(n >> 32), low = (u32)n;
    u32 quotient_high = high / d, remainder = high % d, quotient_low;
    __asm__("divl %4" : "=a"(quotient_low), "=d"(remainder) : "a"(low), "d"(remainder), "rm"(d));
    return ((u64)quotient_high << 32) | quotient_low;
}

static void serial_init(void) {
    outb(COM1 + 1, 0x00); /* no interrupts */
    outb(COM1 + 3, 0x80); /* divisor latch */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0xC7); /* FIFO on */
}

static void put_char(char c) {
    for (u32 spins = 0; spins < 100000 && !(inb(COM1 + 5) & 0x20); spins++) {}
    outb(COM1, (unsigned char)c);
}

static void put_text(const char *text) {
    while (*text) put_char(*text++);
}

static void put_number(u64 value) {
    char digits[21];
    int count = 0;
    do {
        u64 quotient = divide(value, 10);
        digits[count++] = (char)('0' + (u32)(value - quotient * 10));
        value = quotient;
    } while (value);
    while (count) put_char(digits[--count]);
}

/* The value after "name=" in the command line, or fallback. */
static u32 argument(const char *line, const char *name, u32 fallback) {
    if (!line) return fallback;
    for (const char *p = line; *p; p++) {
        if (p != line && p[-1] != ' ') continue;
        const char *n = name, *q = p;
        while (*n && *q == *n) { n++; q++; }
        if (*n || *q != '=') continue;
        q++;
        if (*q < '0' || *q > '9') return fallback;
        u32 value = 0;
        while (*q >= '0' && *q <= '9') value = value * 10 + (u32)(*q++ - '0');
        return value;
    }
    return fallback;
}

/* TSC ticks per millisecond, measured over 50 ms of PIT channel 2 (1.193182 MHz). */
static u32 tsc_per_millisecond(void) {
    const u32 latch = 59659; /* 50 ms */
    outb(0x61, (unsigned char)((inb(0x61) & ~0x02) | 0x01)); /* gate on, speaker off */
    outb(0x43, 0xB0);                                         /* channel 2, mode 0, binary */
    outb(0x42, latch & 0xFF);
    outb(0x42, latch >> 8);
    u64 start = rdtsc();
    u32 polls = 0;
    while (!(inb(0x61) & 0x20)) {
        if (++polls > 50000000u) return 0;
    }
    u64 ticks = rdtsc() - start;
    return (u32)divide(ticks, 50);
}

static inline u32 check_value(u32 page, u32 generation) {
    return (page * 2654435761u) ^ (generation * 40503u) ^ 0xA5A5A5A5u;
}

static volatile u32 *page_at(u32 page) {
    return (volatile u32 *)(WORKING_SET_START + page * PAGE_WORDS * 4);
}

static u32 errors;

static void write_page(u32 page, u32 generation) {
    volatile u32 *words = page_at(page);
    words[0] = generation;
    words[PAGE_WORDS - 1] = check_value(page, generation);
}

static void check_page(u32 page, u32 generation) {
    volatile u32 *words = page_at(page);
    if (words[0] != generation || words[PAGE_WORDS - 1] != check_value(page, generation)) errors++;
}

void guest_main(u32 magic, const u32 *info) {
    serial_init();
    const char *line = 0;
    u32 memory_mib = 0;
    if (magic == 0x2BADB002u && info) {
        if (info[0] & 0x1) memory_mib = (info[2] + 1024) / 1024; /* mem_upper is KiB above 1 MiB */
        if (info[0] & 0x4) line = (const char *)info[4];
    }
    u32 rate = argument(line, "dirty", 0);
    u32 working_set = argument(line, "ws", 64);
    if (memory_mib && working_set + 16 > memory_mib) working_set = memory_mib > 17 ? memory_mib - 17 : 1;
    if (working_set == 0) working_set = 1;
    u32 pages = working_set * 256;
    u32 per_ms = tsc_per_millisecond();
    if (per_ms == 0) per_ms = 2000000; /* no PIT answer: assume 2 GHz */

    put_text("lab-guest start dirty=");
    put_number(rate);
    put_text(" ws=");
    put_number(working_set);
    put_text(" memory=");
    put_number(memory_mib);
    put_text(" corrupt=");
    put_number(argument(line, "corrupt", 0));
    put_text(" tsc_per_ms=");
    put_number(per_ms);
    put_text("\n");

    for (u32 page = 0; page < pages; page++) write_page(page, 1);
    u32 corrupt = argument(line, "corrupt", 0);
    for (u32 page = 0; page < corrupt && page < pages; page++) page_at(page)[0] = 0xDEADu;
    if (argument(line, "park", 0)) {
        u32 parked_errors = 0;
        for (u32 page = 0; page < pages; page++) check_page(page, 1);
        parked_errors = errors;
        put_text("lab-guest parked ws=");
        put_number(working_set);
        put_text(" written=");
        put_number(pages);
        put_text(" errors=");
        put_number(parked_errors);
        put_text("\n");
        for (;;) __asm__ volatile("cli; hlt");
    }
    u32 generation = rate ? 2 : 1, cursor = 0;
    /* written: pages due so far (it skips ahead after a pause); dirtied: pages really written. */
    u64 checked = 0, written = 0, dirtied = 0, dirtied_at_last_tick = 0, tick = 0;
    u64 start = rdtsc(), last_report_ms = 0;
    u64 pages_per_second = (u64)rate * 256;

    for (;;) {
        u64 elapsed_ms = divide(rdtsc() - start, per_ms);
        if (rate) {
            u64 due = divide(elapsed_ms * pages_per_second, 1000);
            /* After a pause (the switchover) catch up by at most a tenth of a second. */
            u64 burst = divide(pages_per_second, 10) + 1;
            if (due > written + burst) written = due - burst;
            while (written < due) {
                check_page(cursor, generation - 1);
                write_page(cursor, generation);
                checked++;
                written++;
                dirtied++;
                if (++cursor == pages) {
                    cursor = 0;
                    generation++;
                }
            }
        }
        if (elapsed_ms >= last_report_ms + 1000) {
            if (!rate) {
                for (u32 page = 0; page < pages; page++) check_page(page, 1);
                checked += pages;
            }
            u64 interval = elapsed_ms - last_report_ms;
            u64 achieved = divide(divide((dirtied - dirtied_at_last_tick) * 1000, (u32)interval), 256);
            last_report_ms = elapsed_ms;
            dirtied_at_last_tick = dirtied;
            put_text("lab-guest tick=");
            put_number(++tick);
            put_text(" generation=");
            put_number(generation);
            put_text(" dirty=");
            put_number(rate);
            put_text(" achieved=");
            put_number(achieved);
            put_text(" checked=");
            put_number(checked);
            put_text(" errors=");
            put_number(errors);
            put_text("\n");
        }
        __asm__ volatile("pause");
    }
}
