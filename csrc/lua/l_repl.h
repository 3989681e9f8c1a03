/* The interactive read-eval-print loop of the `miles` host, and the protected
 * call with Ctrl-C handling that the host also uses to run scripts.
 * The REPL reads with libedit (line editing, history in $MILES_HISTORY or
 * ~/.miles_history) when stdin is a terminal, and plain lines otherwise. */
#ifndef MILES_L_REPL_H
#define MILES_L_REPL_H

#include <lua.h>

/* Run the REPL on L with L's globals until end of input (Ctrl-D) or a line
 * that is just `exit` or `quit`. A lua_CFunction: registered as miles.repl()
 * and called by the host. Returns no values. */
int l_repl(lua_State *L);

/* Call the function below the narg arguments on top of L's stack in protected
 * mode, like lua_pcall, with a traceback added to the error message. A Ctrl-C
 * (SIGINT) during the call stops it with the error "interrupted!"; a second
 * one before the first is honoured kills the process, as in lua.c. */
int l_repl_docall(lua_State *L, int narg, int nres);

/* If status is not LUA_OK, print the error message on top of the stack to
 * stderr (prefixed with "progname: " unless progname is NULL) and pop it.
 * Returns status. */
int l_repl_report(lua_State *L, const char *progname, int status);

#endif
