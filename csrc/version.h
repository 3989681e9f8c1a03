/* The version of miles, printed by `miles --version`. */
#ifndef MILES_VERSION_H
#define MILES_VERSION_H

#define MILES_VERSION "0.1.0"

#endif
