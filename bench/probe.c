/*
 * probe: the tiny helper behind bench/core.sh.
 *
 * Every latency the bench reports is the difference of two CLOCK_MONOTONIC readings taken in
 * C, right at the event (just before a kill(2) or execve(2), first thing in main(), inside a
 * signal handler). The shell script only waits and does arithmetic, so its own slowness and
 * polling never end up in a figure.
 *
 * Events are appended to a stamp file as one line "<event> <monotonic ns> <pid>\n", written
 * with a single write(2) on an O_APPEND descriptor, so lines from several processes never mix.
 *
 * Modes (argv[1]):
 *   stamp FILE                 append "start", then sleep until killed
 *   term FILE                  trap SIGTERM, append "ready"; on SIGTERM append "term", exit 0
 *   exec-at FILE CMD ARG...    append "exec", then execvp(CMD) in this same process
 *   kill SIG PID FILE          append "kill", then kill(PID, SIG)
 *   waitlines FILE N MS        exit 0 once FILE has >= N lines, 1 after MS milliseconds
 *   restart-loop FILE N LIFE_MS TIMEOUT_MS
 *                              N times: let the child named by FILE's last "start" line live
 *                              LIFE_MS, SIGKILL it, wait for the next "start"; print each
 *                              kill-to-start latency in ns on stdout
 *   orphans N FILE [CAP_MS]    make N orphans of PID 1 of our PID namespace, release them all
 *                              at once, append "reaped <ns from release to none left> <ns of
 *                              CPU PID 1 used meanwhile>" (or "timeout ..."), sleep until killed
 *   subreaper CMD ARG...       become a child subreaper, then execvp(CMD)
 *   evict FILE...              drop FILE's clean, unmapped pages from the page cache, so that the
 *                              next exec reads it from disk like a first start would
 *   http N PORTFILE STATSFILE  listen on N loopback ports (written to PORTFILE, one per line,
 *                              once all are bound) and answer every HTTP/1.1 request with 200
 *                              (keep-alive, HEAD too); on SIGUSR1 append "requests <count>"
 *                              to STATSFILE: the health probes of the scaling bench
 * Invoked as `run` (a service's run file symlinked to probe, as s6 wants), or with no
 * arguments, the mode and file come from $PROBE_MODE and $PROBE_FILE; with $PROBE_NOTIFY_FD
 * set, stamp and term modes also signal s6 readiness on that descriptor.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

/* Async-signal-safe: only open/write/close and integer formatting. */
static void append_event(const char *file, const char *event, int64_t ns, long pid)
{
    char line[128];
    char num[2][24];
    int64_t vals[2] = {ns, pid};
    for (int k = 0; k < 2; k++) {
        char tmp[24];
        int n = 0, neg = vals[k] < 0;
        uint64_t v = neg ? (uint64_t)(-vals[k]) : (uint64_t)vals[k];
        do {
            tmp[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        int j = 0;
        if (neg)
            num[k][j++] = '-';
        while (n)
            num[k][j++] = tmp[--n];
        num[k][j] = 0;
    }
    size_t len = 0;
    const char *parts[] = {event, " ", num[0], " ", num[1], "\n"};
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
        size_t l = strlen(parts[p]);
        memcpy(line + len, parts[p], l);
        len += l;
    }
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, len);
    (void)w;
    close(fd);
}

/* Read FILE; return its line count, and the fields of its last line. */
struct last_line {
    char event[32];
    int64_t ns;
    long pid;
};

static int count_lines(const char *file, struct last_line *last)
{
    static char buf[1 << 20];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t total = 0, n;
    while (total < (ssize_t)sizeof buf - 1 && (n = read(fd, buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    close(fd);
    buf[total] = 0;
    int lines = 0;
    char *line_start = buf, *prev_start = NULL;
    for (ssize_t i = 0; i < total; i++) {
        if (buf[i] == '\n') {
            lines++;
            prev_start = line_start;
            line_start = buf + i + 1;
        }
    }
    if (last && prev_start) {
        long long ns = 0;
        last->event[0] = 0;
        last->pid = 0;
        if (sscanf(prev_start, "%31s %lld %ld", last->event, &ns, &last->pid) >= 2)
            last->ns = ns;
    }
    return lines;
}

/* Block until FILE has at least `want` lines or the deadline passes. inotify, not polling:
 * the waiter must not steal CPU from the processes being measured. */
static int wait_lines(const char *file, int want, int64_t deadline, struct last_line *last)
{
    int in = inotify_init1(IN_CLOEXEC);
    if (in < 0)
        die("inotify_init1");
    if (inotify_add_watch(in, file, IN_MODIFY) < 0)
        die(file);
    int have;
    for (;;) {
        have = count_lines(file, last);
        if (have >= want)
            break;
        int64_t left = deadline - now_ns();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = in, .events = POLLIN};
        int ms = (int)(left / 1000000) + 1;
        if (poll(&p, 1, ms) > 0) {
            char ev[4096];
            ssize_t r = read(in, ev, sizeof ev);
            (void)r;
        }
    }
    close(in);
    return have;
}

static void sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static const char *term_file;

static void on_term(int sig)
{
    (void)sig;
    append_event(term_file, "term", now_ns(), getpid());
    _exit(0);
}

/* s6 readiness: with a `notification-fd` file in the service dir, s6-supervise hands us a pipe
 * on that fd; a newline on it means "ready". s6 >= 2.11 restarts a service that died at once
 * only if it had been ready for a second; without readiness it always waits a full second. */
static void notify_ready(void)
{
    const char *fd_s = getenv("PROBE_NOTIFY_FD");
    if (!fd_s)
        return;
    int fd = atoi(fd_s);
    ssize_t w = write(fd, "\n", 1);
    (void)w;
    close(fd);
}

static void __attribute__((noreturn)) mode_stamp(const char *file)
{
    append_event(file, "start", now_ns(), getpid());
    notify_ready();
    for (;;)
        pause();
}

static void __attribute__((noreturn)) mode_term(const char *file)
{
    term_file = file;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) < 0)
        die("sigaction");
    append_event(file, "ready", now_ns(), getpid());
    notify_ready();
    for (;;)
        pause();
}

static int mode_restart_loop(const char *file, int n, int64_t life_ns, int64_t timeout_ns)
{
    struct last_line last;
    int have = wait_lines(file, 1, now_ns() + timeout_ns, &last);
    if (have < 1) {
        fprintf(stderr, "probe: no first start in %s\n", file);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(last.event, "start") != 0 || last.pid <= 0) {
            fprintf(stderr, "probe: unexpected line '%s' in %s\n", last.event, file);
            return 1;
        }
        sleep_ns(last.ns + life_ns - now_ns());
        int64_t t0 = now_ns();
        if (kill((pid_t)last.pid, SIGKILL) < 0)
            die("kill");
        int got = wait_lines(file, have + 1, now_ns() + timeout_ns, &last);
        if (got <= have) {
            fprintf(stderr, "probe: no restart within %lld ms\n", (long long)(timeout_ns / 1000000));
            return 1;
        }
        have = got;
        printf("%lld\n", (long long)(last.ns - t0));
        fflush(stdout);
    }
    return 0;
}

/* CPU time (ns) PID 1 of our namespace has run, summed over its threads; -1 if unreadable. */
static int64_t init_runtime_ns(void)
{
    DIR *d = opendir("/proc/1/task");
    if (!d)
        return -1;
    int64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[64], buf[128];
        snprintf(path, sizeof path, "/proc/1/task/%.20s/schedstat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r > 0) {
            buf[r] = 0;
            total += atoll(buf);
        }
    }
    closedir(d);
    return total;
}

/*
 * Make n orphans at once: a middle process forks n grandchildren that block reading a pipe,
 * then exits; we reap the middle, so all n now belong to the nearest reaper (PID 1 of the
 * namespace). Closing our end of the pipe releases them all at the same moment: each reads
 * EOF and exits. kill(pid, 0) fails with ESRCH only once a pid has been reaped (a zombie still
 * answers), so we time release -> the last one gone. That span includes the kernel tearing n
 * processes down; the CPU time PID 1 used meanwhile is its own share.
 */
static void __attribute__((noreturn)) mode_orphans(int n, const char *file, int64_t cap_ns)
{
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    int pidpipe[2], gate[2];
    if (!pids || pipe2(pidpipe, O_CLOEXEC) < 0 || pipe2(gate, O_CLOEXEC) < 0)
        die("setup");
    pid_t middle = fork();
    if (middle < 0)
        die("fork");
    if (middle == 0) {
        close(pidpipe[0]);
        close(gate[1]);
        for (int i = 0; i < n; i++) {
            pid_t c = fork();
            if (c < 0)
                _exit(3);
            if (c == 0) {
                char b;
                while (read(gate[0], &b, 1) < 0 && errno == EINTR)
                    ;
                _exit(0);
            }
            if (write(pidpipe[1], &c, sizeof c) != sizeof c)
                _exit(3);
        }
        _exit(0);
    }
    close(pidpipe[1]);
    close(gate[0]);
    int got = 0;
    while (got < n) {
        ssize_t r = read(pidpipe[0], &pids[got], sizeof(pid_t));
        if (r == sizeof(pid_t))
            got++;
        else if (r <= 0 && errno != EINTR)
            break;
    }
    int st;
    if (waitpid(middle, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || got != n) {
        fprintf(stderr, "probe: could not create %d orphans (got %d)\n", n, got);
        append_event(file, "failed", 0, got);
        for (;;)
            pause();
    }
    /* For profiling by hand: time to attach perf to PID 1 before the release. */
    const char *hold = getenv("PROBE_HOLD_MS");
    if (hold)
        sleep_ns(atoll(hold) * 1000000LL);
    int64_t cpu0 = init_runtime_ns();
    int64_t t0 = now_ns();
    close(gate[1]);
    int first_alive = 0;
    int64_t t1;
    for (;;) {
        while (first_alive < n && kill(pids[first_alive], 0) < 0 && errno == ESRCH)
            first_alive++;
        t1 = now_ns();
        if (first_alive == n || t1 - t0 > cap_ns)
            break;
        sleep_ns(200000);
    }
    int64_t cpu1 = init_runtime_ns();
    int64_t cpu = (cpu0 < 0 || cpu1 < 0) ? -1 : cpu1 - cpu0;
    if (first_alive == n)
        append_event(file, "reaped", t1 - t0, cpu);
    else
        append_event(file, "timeout", t1 - t0, cpu);
    for (;;)
        pause();
}

/*
 * The health endpoints of the scaling bench: N listeners in one epoll loop, one per program as
 * if each program were its own backend. Every complete request (ended by an empty line; no
 * request here has a body) gets a 200 with a small JSON body (headers only for HEAD), and the
 * connection stays open for the next probe. Cheap on purpose: the machine is shared with the
 * supervisor being measured.
 */
#define HTTP_BUF 2048
struct http_conn {
    int len;
    char buf[HTTP_BUF];
};

static volatile sig_atomic_t http_report;

static void on_usr1(int sig)
{
    (void)sig;
    http_report = 1;
}

static void http_answer(int fd, struct http_conn *c, uint64_t *served)
{
    static const char get_resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 16\r\n\r\n{\"status\":\"ok\"}\n";
    static const char head_resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 16\r\n\r\n";
    for (;;) {
        char *end = memmem(c->buf, (size_t)c->len, "\r\n\r\n", 4);
        if (!end)
            break;
        int is_head = c->len >= 5 && !memcmp(c->buf, "HEAD ", 5);
        const char *r = is_head ? head_resp : get_resp;
        size_t rl = is_head ? sizeof head_resp - 1 : sizeof get_resp - 1;
        ssize_t w = write(fd, r, rl); /* a few dozen bytes into an empty socket buffer */
        (void)w;
        (*served)++;
        int used = (int)(end + 4 - c->buf);
        memmove(c->buf, c->buf + used, (size_t)(c->len - used));
        c->len -= used;
    }
}

static int __attribute__((noreturn)) mode_http(int n, const char *portfile, const char *statsfile)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    long maxfd = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) ? (long)rl.rlim_cur : 65536;
    if (maxfd > 1 << 20)
        maxfd = 1 << 20;
    struct http_conn **conns = calloc((size_t)maxfd, sizeof *conns);
    char *listening = calloc((size_t)maxfd, 1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || !listening || ep < 0)
        die("http setup");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", portfile);
    FILE *pf = fopen(tmp, "w");
    if (!pf)
        die(tmp);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || fd >= maxfd)
            die("socket");
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &al) < 0)
            die("bind/listen");
        listening[fd] = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
        fprintf(pf, "%d\n", ntohs(a.sin_port));
    }
    if (fclose(pf) != 0 || rename(tmp, portfile) < 0)
        die(portfile);

    uint64_t served = 0;
    struct epoll_event evs[256];
    for (;;) {
        if (http_report) {
            http_report = 0;
            append_event(statsfile, "requests", (int64_t)served, getpid());
        }
        int k = epoll_wait(ep, evs, 256, -1);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (listening[fd]) {
                int c;
                while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= maxfd) {
                        close(c);
                        continue;
                    }
                    int one = 1;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (!conns[c] && !(conns[c] = malloc(sizeof **conns)))
                        die("malloc");
                    conns[c]->len = 0;
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
                        close(c);
                }
                continue;
            }
            struct http_conn *c = conns[fd];
            ssize_t r = read(fd, c->buf + c->len, (size_t)(HTTP_BUF - c->len));
            if (r > 0) {
                c->len += (int)r;
                http_answer(fd, c, &served);
                if (c->len == HTTP_BUF) /* a request this bench never sends: drop it */
                    r = 0;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
}

int main(int argc, char **argv)
{
    /* s6-supervise runs `./run` (with the service name as an argument on recent s6). */
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (argc < 2 || (!strcmp(base, "run") && getenv("PROBE_MODE"))) {
        const char *mode = getenv("PROBE_MODE"), *file = getenv("PROBE_FILE");
        if (!mode || !file) {
            fprintf(stderr, "usage: probe MODE ARGS... (or PROBE_MODE + PROBE_FILE)\n");
            return 2;
        }
        if (!strcmp(mode, "stamp"))
            mode_stamp(file);
        if (!strcmp(mode, "term"))
            mode_term(file);
        fprintf(stderr, "probe: PROBE_MODE must be stamp or term\n");
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "stamp") && argc == 3)
        mode_stamp(argv[2]);
    if (!strcmp(mode, "term") && argc == 3)
        mode_term(argv[2]);
    if (!strcmp(mode, "exec-at") && argc >= 4) {
        append_event(argv[2], "exec", now_ns(), getpid());
        execvp(argv[3], argv + 3);
        die(argv[3]);
    }
    if (!strcmp(mode, "kill") && argc == 5) {
        int sig = atoi(argv[2]);
        pid_t pid = (pid_t)atol(argv[3]);
        append_event(argv[4], "kill", now_ns(), pid);
        if (kill(pid, sig) < 0)
            die("kill");
        return 0;
    }
    if (!strcmp(mode, "waitlines") && argc == 5) {
        int want = atoi(argv[3]);
        int64_t deadline = now_ns() + atoll(argv[4]) * 1000000LL;
        return wait_lines(argv[2], want, deadline, NULL) >= want ? 0 : 1;
    }
    if (!strcmp(mode, "restart-loop") && argc == 6)
        return mode_restart_loop(argv[2], atoi(argv[3]), atoll(argv[4]) * 1000000LL,
                                 atoll(argv[5]) * 1000000LL);
    if (!strcmp(mode, "orphans") && (argc == 4 || argc == 5))
        mode_orphans(atoi(argv[2]), argv[3],
                            (argc == 5 ? atoll(argv[4]) : 60000LL) * 1000000LL);
    if (!strcmp(mode, "evict") && argc >= 3) {
        for (int i = 2; i < argc; i++) {
            int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
            if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
                perror(argv[i]);
            if (fd >= 0)
                close(fd);
        }
        return 0;
    }
    if (!strcmp(mode, "http") && argc == 5)
        mode_http(atoi(argv[2]), argv[3], argv[4]);
    if (!strcmp(mode, "subreaper") && argc >= 3) {
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
            die("prctl");
        execvp(argv[2], argv + 2);
        die(argv[2]);
    }
    fprintf(stderr, "probe: bad arguments (see the comment at the top of bench/probe.c)\n");
    return 2;
}
