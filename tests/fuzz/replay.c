/* Feeds every regular file of the directories (or files) named on the command line to
 * LLVMFuzzerTestOneInput once: the seed corpora run in the normal test suite, with any compiler. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf = NULL;
    long len;
    int rc = -1;

    if (fp == NULL)
        goto out;
    if (fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0)
        goto out;
    /* an exact-size heap copy so ASan sees any read past the end */
    buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, fp) != (size_t)len)
        goto out;
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "replay: cannot read %s\n", path);
    free(buf);
    if (fp != NULL)
        fclose(fp);
    return rc;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs the directory's files in name order so a failure reproduces the same way. */
static int run_dir(const char *dir, int *count)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, NULL), rc = 0;

    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s\n", dir);
        return -1;
    }
    char **names = calloc((size_t)n + 1, sizeof *names);
    int m = 0;

    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.' && names != NULL) {
            size_t len = strlen(dir) + strlen(ents[i]->d_name) + 2;

            names[m] = malloc(len);
            if (names[m] != NULL)
                snprintf(names[m++], len, "%s/%s", dir, ents[i]->d_name);
        }
        free(ents[i]);
    }
    free(ents);
    if (names == NULL)
        return -1;
    qsort(names, (size_t)m, sizeof *names, cmp);
    for (int i = 0; i < m; i++) {
        struct stat st;

        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            printf("replay %s\n", names[i]);
            fflush(stdout);
            if (run_file(names[i]) != 0)
                rc = -1;
            else
                (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    int count = 0, rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR|FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
            rc = 1;
        } else if (S_ISDIR(st.st_mode)) {
            if (run_dir(argv[i], &count) != 0)
                rc = 1;
        } else if (run_file(argv[i]) != 0) {
            rc = 1;
        } else {
            count++;
        }
    }
    printf("replayed %d input(s)\n", count);
    return count == 0 ? 1 : rc;
}
