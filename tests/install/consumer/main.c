/* main.c — a consumer of the installed mpiimport core: calls two of its pure
 * functions and prints what tests/install/test_consumer.sh checks. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <mpiimport/checksum.h>
#include <mpiimport/status.h>

#ifndef CONSUMER_VERSION
#define CONSUMER_VERSION "unknown"
#endif

int main(void)
{
    const char *abc = "abc";
    printf("mpiimport %s\n", CONSUMER_VERSION);
    printf("strerror(MPII_ERR_CHECKSUM): %s\n", mpii_strerror(MPII_ERR_CHECKSUM));
    printf("checksum64(\"\", 0): %016" PRIx64 "\n", mpii_checksum64("", 0, 0));
    printf("checksum64(\"abc\", 0): %016" PRIx64 "\n", mpii_checksum64(abc, strlen(abc), 0));
    return 0;
}
