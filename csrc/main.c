/* The `miles` host: a Lua 5.4 interpreter with the miles core linked in.
 *
 *   miles [options] [script [args]]
 *
 * It opens the standard libraries, makes `require "miles.core"` use the core
 * linked into this executable, puts the project's Lua library first on
 * package.path, loads `miles = require "miles"`, then runs what the command
 * line asks for, as lua.c does: -e statements, -l libraries, a script with
 * its arguments in `arg` and `...`, and the REPL (csrc/lua/l_repl.c). Any
 * error prints its message and traceback on stderr and exits with status 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua/l_repl.h"
#include "version.h"

#define PROGNAME "miles"

/* The core module's entry point (csrc/lua/l_init.c), linked statically. */
int luaopen_miles_core(lua_State *L);

/* What the command line asks for. argv[script] is the script (0: none). */
typedef struct {
	int script;
	int interactive; /* -i */
	int version;     /* -v, --version */
	int help;        /* -h, --help */
	int execute;     /* some -e or -l */
	int bad;         /* argv index of a bad option (0: none) */
} options;

/* ---- command line ------------------------------------------------------ */

/* Print the usage summary on f. */
static void print_usage(FILE *f)
{
	fputs("usage: " PROGNAME " [options] [script [args]]\n"
	      "Options:\n"
	      "  -e stat        run the Lua statement stat\n"
	      "  -l name        require library name into global name\n"
	      "  -i             enter the REPL after running script\n"
	      "  -v, --version  print the version\n"
	      "  -h, --help     print this help\n"
	      "  --             stop handling options\n"
	      "  -              run stdin as a script and stop handling options\n"
	      "With no script, -e or -v, " PROGNAME " starts the REPL; it reads plain\n"
	      "lines without prompts when stdin is not a terminal. Leave it with\n"
	      "Ctrl-D or `exit`. Every run starts with `miles = require \"miles\"`.\n"
	      "Environment: MILES_ROOT (project root, default: two levels above\n"
	      "the directory of the executable), MILES_HISTORY (REPL history file,\n"
	      "default ~/.miles_history; empty: none).\n",
	      f);
}

/* Print the miles and Lua versions. */
static void print_version(void)
{
	printf(PROGNAME " %s (%s)\n", MILES_VERSION, LUA_RELEASE);
	fflush(stdout);
}

/* Whether option a takes the next word as its value (-e stat, -l name). */
static int takes_value(const char *a)
{
	return (a[1] == 'e' || a[1] == 'l') && a[2] == '\0';
}

/* Read the options before the script into o. Returns 0 on a bad option
 * (o->bad is its index). */
static int parse_args(int argc, char **argv, options *o)
{
	int i;

	memset(o, 0, sizeof *o);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || strcmp(a, "-") == 0) {
			o->script = i;
			return 1;
		}
		if (strcmp(a, "--") == 0) {
			o->script = i + 1 < argc ? i + 1 : 0;
			return 1;
		}
		if (strcmp(a, "-i") == 0)
			o->interactive = 1;
		else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0)
			o->version = 1;
		else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			o->help = 1;
		else if (a[1] == 'e' || a[1] == 'l') {
			if (takes_value(a) && ++i >= argc) {
				o->bad = i - 1;
				return 0;
			}
			o->execute = 1;
		} else {
			o->bad = i;
			return 0;
		}
	}
	return 1;
}

/* Say what is wrong with the bad option, then how to call the program. */
static void print_bad_option(char **argv, const options *o)
{
	const char *a = argv[o->bad];

	if (takes_value(a))
		fprintf(stderr, PROGNAME ": '%s' needs an argument\n", a);
	else
		fprintf(stderr, PROGNAME ": unrecognized option '%s'\n", a);
	print_usage(stderr);
}

/* Set the global `arg`: arg[0] is the script (the program when there is
 * none), arg[1..] its arguments, negative indices the program and the
 * options before the script. */
static void create_arg_table(lua_State *L, int argc, char **argv, int script)
{
	int i;

	lua_createtable(L, argc - script, script + 1);
	for (i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script);
	}
	lua_setglobal(L, "arg");
}

/* ---- the Lua environment ----------------------------------------------- */

/* The project root: $MILES_ROOT, else two levels above the directory of the
 * executable (<root>/build/bin/miles, <root>/build-san/bin/miles). Written
 * into buf; NULL when it cannot be found. */
static const char *find_root(char *buf, size_t size)
{
	const char *env = getenv("MILES_ROOT");
	ssize_t n;
	int up;

	if (env != NULL && env[0] != '\0')
		return env;
	n = readlink("/proc/self/exe", buf, size - 1);
	if (n <= 0 || (size_t)n >= size - 1)
		return NULL;
	buf[n] = '\0';
	for (up = 0; up < 3; up++) { /* drop "miles", "bin" and "build" */
		char *slash = strrchr(buf, '/');

		if (slash == NULL)
			return NULL;
		*slash = '\0';
	}
	return buf;
}

/* Put <root>/lua first on package.path (so `require "miles"` finds
 * lua/miles/init.lua) and <root>/build/lib first on package.cpath. */
static void setup_paths(lua_State *L)
{
	char buf[4096];
	const char *root = find_root(buf, sizeof buf);

	if (root == NULL) {
		fprintf(stderr, PROGNAME ": warning: cannot find the project root; "
			"set MILES_ROOT\n");
		return;
	}
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "path");
	lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", root, root,
			lua_tostring(L, -1));
	lua_setfield(L, -3, "path");
	lua_pop(L, 1);
	lua_getfield(L, -1, "cpath");
	lua_pushfstring(L, "%s/build/lib/?.so;%s", root, lua_tostring(L, -1));
	lua_setfield(L, -3, "cpath");
	lua_pop(L, 2);
}

/* Make `require "miles.core"` open the core linked into this executable
 * rather than look for build/lib/miles/core.so (a second copy of the core,
 * with its own allocator state, would be wrong). */
static void preload_core(lua_State *L)
{
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushcfunction(L, luaopen_miles_core);
	lua_setfield(L, -2, "miles.core");
	lua_pop(L, 1);
}

/*
 * miles = require "miles"
 *
 * Done before anything else runs, so scripts and the REPL find the library
 * in the global `miles`. If it fails (the Lua library is missing or has an
 * error), the error is printed and the host carries on as a plain Lua 5.4
 * interpreter: it stays usable to debug the library itself.
 */
static void load_miles_library(lua_State *L)
{
	int status;

	lua_getglobal(L, "require");
	lua_pushliteral(L, "miles");
	status = l_repl_docall(L, 1, 1);
	if (status == LUA_OK) {
		lua_setglobal(L, "miles");
		return;
	}
	fprintf(stderr, PROGNAME ": warning: require \"miles\" failed, "
		"going on without it:\n");
	l_repl_report(L, PROGNAME, status);
}

/* ---- running ----------------------------------------------------------- */

/* Run a -e statement. */
static int run_string(lua_State *L, const char *code)
{
	int status = luaL_loadbuffer(L, code, strlen(code), "=(command line)");

	if (status == LUA_OK)
		status = l_repl_docall(L, 0, 0);
	return status;
}

/* Run a -l option: global name = require(name). */
static int run_require(lua_State *L, const char *name)
{
	int status;

	lua_getglobal(L, "require");
	lua_pushstring(L, name);
	status = l_repl_docall(L, 1, 1);
	if (status == LUA_OK)
		lua_setglobal(L, name);
	return status;
}

/* Run the -e and -l options in their order; stop at the first error. */
static int run_options(lua_State *L, int argc, char **argv, const options *o)
{
	int end = o->script > 0 ? o->script : argc;
	int i, status = LUA_OK;

	for (i = 1; i < end && status == LUA_OK; i++) {
		const char *a = argv[i];
		const char *value;

		if (strcmp(a, "--") == 0)
			break;
		if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l'))
			continue;
		value = takes_value(a) ? argv[++i] : a + 2;
		if (a[1] == 'e')
			status = run_string(L, value);
		else
			status = run_require(L, value);
	}
	return status;
}

/* Run the script argv[o->script] ("-": stdin, unless it follows "--") with
 * the words after it as its arguments `...`. */
static int run_script(lua_State *L, int argc, char **argv, const options *o)
{
	const char *fname = argv[o->script];
	int status, i;

	if (strcmp(fname, "-") == 0 && strcmp(argv[o->script - 1], "--") != 0)
		fname = NULL; /* luaL_loadfile reads stdin */
	status = luaL_loadfile(L, fname);
	if (status != LUA_OK)
		return status;
	luaL_checkstack(L, argc - o->script, "too many arguments to script");
	for (i = o->script + 1; i < argc; i++)
		lua_pushstring(L, argv[i]);
	return l_repl_docall(L, argc - o->script - 1, 0);
}

/* Start the REPL, with a greeting when a person is at the terminal. */
static int run_repl(lua_State *L)
{
	if (isatty(STDIN_FILENO)) {
		printf(PROGNAME " %s (%s)  Ctrl-D or `exit` to leave\n",
		       MILES_VERSION, LUA_RELEASE);
		fflush(stdout);
	}
	lua_pushcfunction(L, l_repl);
	return l_repl_docall(L, 0, 0);
}

/* Everything after the state is made, in protected mode: takes argc and
 * argv, returns true when all went well. Errors are reported here. */
static int pmain(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = lua_touserdata(L, 2);
	int repl;
	options o;

	lua_pushboolean(L, 0);
	if (!parse_args(argc, argv, &o)) {
		print_bad_option(argv, &o);
		return 1;
	}
	if (o.help) {
		print_usage(stdout);
		lua_pushboolean(L, 1);
		return 1;
	}
	if (o.version)
		print_version();
	repl = o.interactive || (!o.script && !o.execute && !o.version);
	if (!o.script && !o.execute && !repl) {
		lua_pushboolean(L, 1); /* --version alone */
		return 1;
	}
	luaL_checkversion(L);
	luaL_openlibs(L);
	create_arg_table(L, argc, argv, o.script);
	setup_paths(L);
	preload_core(L);
	load_miles_library(L);
	if (l_repl_report(L, PROGNAME, run_options(L, argc, argv, &o)) != LUA_OK)
		return 1;
	if (o.script && l_repl_report(L, PROGNAME,
				      run_script(L, argc, argv, &o)) != LUA_OK)
		return 1;
	if (repl && l_repl_report(L, PROGNAME, run_repl(L)) != LUA_OK)
		return 1;
	lua_pushboolean(L, 1);
	return 1;
}

/* Make the state, run pmain, close the state (so __gc and __close run and
 * the sanitizers see no leak), and exit 0 on success, 1 on any error. */
int main(int argc, char **argv)
{
	lua_State *L = luaL_newstate();
	int status, ok;

	if (L == NULL) {
		fprintf(stderr, PROGNAME ": cannot create the Lua state: "
			"not enough memory\n");
		return EXIT_FAILURE;
	}
	lua_pushcfunction(L, pmain);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	status = lua_pcall(L, 2, 1, 0);
	ok = status == LUA_OK && lua_toboolean(L, -1);
	l_repl_report(L, PROGNAME, status);
	lua_close(L);
	return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
