/* fuzz_replay.h - a main() for fuzz targets built without libFuzzer.
 *
 * With -DFUZZ_REPLAY_MAIN, a target becomes an ordinary program that feeds every
 * file named on the command line, and every file inside each directory named, to
 * LLVMFuzzerTestOneInput once. That is how the corpus runs as a plain test in every
 * build (dav1d does the same). Include it after the target's definition. */
#ifndef SLUICE_FUZZ_REPLAY_H
#define SLUICE_FUZZ_REPLAY_H

#ifdef FUZZ_REPLAY_MAIN
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int
fuzz_replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    long len;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (data = malloc((size_t)len + 1)) == NULL ||
        fread(data, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        if (f != NULL)
            fclose(f);
        free(data);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, (size_t)len);
    free(data);
    return 0;
}

int
main(int argc, char **argv)
{
    int i, nfiles = 0, failed = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *de;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            failed |= fuzz_replay_file(argv[i]) < 0;
            nfiles++;
            continue;
        }
        if ((d = opendir(argv[i])) == NULL)
            return 1;
        while ((de = readdir(d)) != NULL) {
            char path[4096];

            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            failed |= fuzz_replay_file(path) < 0;
            nfiles++;
        }
        closedir(d);
    }
    printf("replay: %d inputs\n", nfiles);
    return failed;
}
#endif

#endif
