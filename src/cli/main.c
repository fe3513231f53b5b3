#include "locallm.h"
#include <stdio.h>
int main(void) { printf("locallm %s\n", lm_version()); return 0; }
