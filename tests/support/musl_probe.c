/*
 * getaddrinfo through musl's stub resolver (what Alpine-based containers use), for
 * tests/dns/test_dns_netns.py. Built by the test with `musl-gcc -static`; never committed as a binary.
 *
 * Usage: musl_probe NAME...
 * Prints one line per name: "NAME OK ADDR..." (addresses in the order returned) or
 * "NAME ERR CODE MESSAGE" with getaddrinfo's error code.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        struct addrinfo hints, *found, *each;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int code = getaddrinfo(argv[i], NULL, &hints, &found);
        if (code != 0) {
            printf("%s ERR %d %s\n", argv[i], code, gai_strerror(code));
            continue;
        }
        printf("%s OK", argv[i]);
        for (each = found; each != NULL; each = each->ai_next) {
            char text[INET6_ADDRSTRLEN];
            const void *address = each->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)each->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)each->ai_addr)->sin6_addr;
            if (inet_ntop(each->ai_family, address, text, sizeof text) != NULL) {
                printf(" %s", text);
            }
        }
        printf("\n");
        freeaddrinfo(found);
    }
    return 0;
}
