/* The `python3` shim of the sandbox's warm interpreter (sandbox/warm_python_manager.py builds it, with
 * REAL_PYTHON defined as the real interpreter's path). It sends its argv, environment, umask, fds 0-2 and
 * current directory to the zygote (sandbox/warm_python_serve.py), forwards signals to the child that runs
 * the program and exits as that child did; anything it cannot hand over runs REAL_PYTHON instead. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static volatile pid_t child = 0;
static char **args;

static void cold(void) {
    args[0] = (char *)REAL_PYTHON;
    execv(REAL_PYTHON, args);
    perror(REAL_PYTHON);
    _exit(127);
}

static void forward(int sig) {
    if (child > 0) kill(child, sig);
}

struct buf { char *data; size_t len, cap; };

static void put(struct buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) cold();
        b->data = p; b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void field(struct buf *b, const char *s, int first) {
    if (!first) put(b, "", 1);
    put(b, s, strlen(s));
}

int main(int argc, char **argv) {
    args = argv;
    if (argc < 2) cold();
    int form_c = strcmp(argv[1], "-c") == 0 && argc > 2;
    int form_script = argv[1][0] != '-' && argv[1][0] != '\0';
    if (!form_c && !form_script) cold();
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) == -1) cold();
    /* The zygote's socket is next to our directory: <dir>/bin/python3 -> <dir>/zygote.sock */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) cold();
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash) cold();
    *slash = '\0';
    slash = strrchr(self, '/');
    if (!slash) cold();
    *slash = '\0';
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(self) + strlen("/zygote.sock") >= sizeof addr.sun_path) cold();
    strcpy(addr.sun_path, self);
    strcat(addr.sun_path, "/zygote.sock");
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) cold();
    int here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (here < 0) cold();
    mode_t mask = umask(0);
    umask(mask);

    struct buf body = {0};
    char num[32];
    field(&body, "1", 1);
    snprintf(num, sizeof num, "%u", (unsigned)mask);
    field(&body, num, 0);
    field(&body, argv[0], 0);
    snprintf(num, sizeof num, "%d", argc - 1);
    field(&body, num, 0);
    for (int i = 1; i < argc; i++) field(&body, argv[i], 0);
    for (char **e = environ; *e; e++) field(&body, *e, 0);

    struct buf msg = {0};
    put(&msg, "KRW1", 4);
    uint32_t length = htonl((uint32_t)body.len);
    put(&msg, (const char *)&length, 4);
    put(&msg, body.data, body.len);

    int fds[4] = {0, 1, 2, here};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = {msg.data, msg.len};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ssize_t sent;
    do sent = sendmsg(sock, &mh, 0); while (sent < 0 && errno == EINTR);
    if (sent < 0) cold();
    size_t done = (size_t)sent;
    while (done < msg.len) {
        ssize_t w = send(sock, msg.data + done, msg.len - done, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) cold();
        done += (size_t)w;
    }
    close(here);

    unsigned char in[64];
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(sock, in + have, sizeof in - have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            /* Never fall back once the request is sent: the program may already run (not twice). */
            static const char lost[] = "python3 (sandbox warm interpreter): lost the interpreter process\n";
            if (write(2, lost, sizeof lost - 1) < 0) _exit(1);
            _exit(1);
        }
        have += (size_t)r;
        while (have > 0) {
            if (in[0] == 'C') cold();
            if (have < 5) break;
            int32_t value;
            memcpy(&value, in + 1, 4);
            value = (int32_t)ntohl((uint32_t)value);
            unsigned char kind = in[0];
            memmove(in, in + 5, have - 5);
            have -= 5;
            if (kind == 'P') {
                child = value;
                int signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_handler = forward;
                sa.sa_flags = SA_RESTART;
                sigemptyset(&sa.sa_mask);
                for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
                    sigaction(signals[i], &sa, NULL);
            } else if (kind == 'S') {
                int status = value;
                if (WIFSIGNALED(status)) {
                    int sig = WTERMSIG(status);
                    signal(sig, SIG_DFL);
                    sigset_t set;
                    sigemptyset(&set);
                    sigaddset(&set, sig);
                    sigprocmask(SIG_UNBLOCK, &set, NULL);
                    kill(getpid(), sig);
                    _exit(128 + sig);
                }
                _exit(WEXITSTATUS(status));
            }
        }
    }
}
