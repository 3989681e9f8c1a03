/* The REPL of the `miles` host, also reachable from Lua as miles.repl().
 *
 * Behaviour:
 *   - Each input is first compiled as "return <line>", so an expression prints
 *     its values (through tostring, tab-separated); otherwise as a statement.
 *     While either form ends early ("... near <eof>") it asks for more lines
 *     with ">> ".
 *     Each input is its own chunk, as in lua.c: a `local` lasts one input;
 *     globals stay.
 *   - Errors print their message and traceback on stderr; the loop goes on.
 *   - On a terminal: prompt "miles> ", line editing and history (libedit),
 *     Ctrl-C cancels the line being typed or stops the running statement.
 *     History: $MILES_HISTORY (empty: none) or ~/.miles_history, read once
 *     per process, rewritten after each new entry, capped at 1000 entries.
 *   - Not on a terminal (a pipe, a file): plain lines, no prompt, no history;
 *     stdout carries only what the code prints and the values, so the output
 *     is deterministic.
 *   - It ends at end of input (Ctrl-D on a terminal) or on a line that is
 *     just `exit` or `quit`.
 * Ctrl-C while Lua code runs sets a hook that raises "interrupted!", as lua.c
 * does; l_repl_docall holds that machinery so the host runs scripts with it. */
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lua.h>

#include "l_repl.h"

#define REPL_PROMPT1 "miles> "
#define REPL_PROMPT2 ">> "
#define REPL_CHUNKNAME "=stdin"
#define REPL_HISTORY_MAX 1000
#define REPL_SESSION_MT "miles.ReplSession"
#define REPL_EOF_MARK "<eof>"

/* What reading input can give besides a Lua status code (all >= 0). */
enum {
	REPL_EOF = -1, REPL_INTERRUPTED = -2, REPL_QUIT = -3, REPL_LINE = -4,
	REPL_MORE = -5
};

/* One REPL session: the C memory it owns, freed by session_close (its __close
 * and __gc), so a Lua error that unwinds l_repl frees it too. */
typedef struct {
	int tty;       /* reading a terminal through libedit */
	int drop;      /* frames of tracebacks to leave out: l_repl and below */
	char *line;    /* the last line read, without its newline (malloc'd) */
	size_t len;    /* its length */
	size_t cap;    /* getline's capacity of line (pipe mode) */
	char *ctype;   /* LC_CTYPE to restore at the end (terminal mode) */
} repl_session;

/* ---- Ctrl-C ------------------------------------------------------------ */

/* The state that a Ctrl-C must stop (NULL while none runs), and whether a
 * SIGINT came since the flag was last cleared. */
static lua_State *volatile sig_state = NULL;
static volatile sig_atomic_t sig_seen = 0;

/* Hook set by the SIGINT handler: remove itself and raise the error at the
 * first instruction, call or return the interrupted code reaches. */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	luaL_error(L, "interrupted!");
}

/* SIGINT while Lua code runs: stop it through a hook (lua_sethook is safe in
 * a signal handler). The default action comes back, so a second Ctrl-C kills
 * a process stuck in C code that never reaches the hook. */
static void on_sigint_run(int sig)
{
	int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
	lua_State *L = sig_state;

	signal(sig, SIG_DFL);
	sig_seen = 1;
	if (L != NULL)
		lua_sethook(L, stop_hook, mask, 1);
}

/* SIGINT while the REPL waits for input: only note it; the read, installed
 * without SA_RESTART, fails with EINTR and the line is dropped. */
static void on_sigint_read(int sig)
{
	(void)sig;
	sig_seen = 1;
}

/* Install handler for SIGINT and save the previous action in old, unless
 * SIGINT is ignored (started in the background): that choice is kept. */
static void sigint_push(void (*handler)(int), int restart, struct sigaction *old)
{
	struct sigaction sa;

	sigaction(SIGINT, NULL, old);
	if (old->sa_handler == SIG_IGN)
		return;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigaction(SIGINT, &sa, NULL);
}

/* ---- protected calls and error reports --------------------------------- */

/* Remove the last n lines of the string on top of the stack (it is left as
 * it is when it has fewer). */
static void drop_last_lines(lua_State *L, int n)
{
	size_t end;
	const char *s = lua_tolstring(L, -1, &end);

	while (n-- > 0) {
		while (end > 0 && s[end - 1] != '\n')
			end--;
		if (end == 0)
			return;
		end--;
	}
	lua_pushlstring(L, s, end);
	lua_remove(L, -2);
}

/* Message handler of the protected calls: the error as a string (through
 * its __tostring if it has one) followed by a traceback, less its last
 * upvalue-1 lines: the REPL leaves out its own frames and those below it,
 * which say nothing about the line typed. */
static int msg_handler(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			return 1;
		msg = lua_pushfstring(L, "(error object is a %s value)",
				      luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	drop_last_lines(L, (int)lua_tointeger(L, lua_upvalueindex(1)));
	return 1;
}

/* l_repl_docall, leaving the last drop frames out of tracebacks. Nested
 * calls (a script calling miles.repl()) each restore the SIGINT action and
 * target state they found. */
static int docall(lua_State *L, int narg, int nres, int drop)
{
	struct sigaction old;
	lua_State *old_state = sig_state;
	int base = lua_gettop(L) - narg;
	int status;

	lua_pushinteger(L, drop);
	lua_pushcclosure(L, msg_handler, 1);
	lua_insert(L, base);
	sig_state = L;
	sigint_push(on_sigint_run, 1, &old);
	status = lua_pcall(L, narg, nres, base);
	sigaction(SIGINT, &old, NULL);
	sig_state = old_state;
	if (lua_gethook(L) == stop_hook) /* a Ctrl-C that came too late */
		lua_sethook(L, NULL, 0, 0);
	lua_remove(L, base);
	return status;
}

/* See l_repl.h. */
int l_repl_docall(lua_State *L, int narg, int nres)
{
	return docall(L, narg, nres, 0);
}

/* See l_repl.h. stdout is flushed first so the message follows what the
 * code printed before it failed. */
int l_repl_report(lua_State *L, const char *progname, int status)
{
	const char *msg;

	if (status == LUA_OK)
		return status;
	msg = lua_tostring(L, -1);
	if (msg == NULL)
		msg = "(error object is not a string)";
	fflush(stdout);
	if (progname != NULL)
		fprintf(stderr, "%s: ", progname);
	fprintf(stderr, "%s\n", msg);
	fflush(stderr);
	lua_pop(L, 1);
	return status;
}

/* ---- history ----------------------------------------------------------- */

/* The history file: $MILES_HISTORY (set but empty: no file), else
 * $HOME/.miles_history; NULL when there is none. */
static const char *history_path(char *buf, size_t size)
{
	const char *env = getenv("MILES_HISTORY");
	const char *home = getenv("HOME");
	int n;

	if (env != NULL)
		return env[0] != '\0' ? env : NULL;
	if (home == NULL || home[0] == '\0')
		return NULL;
	n = snprintf(buf, size, "%s/.miles_history", home);
	return n > 0 && (size_t)n < size ? buf : NULL;
}

/* Set up libedit once per process: our settings before its initialisation,
 * then the history, capped, from the file. libedit's own signal handlers stay
 * off: they re-send SIGINT to the whole process group. */
static void editor_init(void)
{
	static int done = 0;
	char buf[4096];
	const char *path;

	if (done)
		return;
	done = 1;
	rl_readline_name = "miles";
	rl_catch_signals = 0;
	rl_initialize();
	rl_inhibit_completion = 1; /* Tab inserts a tab: pasted code stays intact */
	stifle_history(REPL_HISTORY_MAX);
	path = history_path(buf, sizeof buf);
	if (path != NULL)
		read_history(path);
}

/* Whether line holds only blanks. */
static int is_blank(const char *line)
{
	return line[strspn(line, " \t\r\n")] == '\0';
}

/* Whether line is the newest history entry. */
static int history_is_last(const char *line)
{
	HIST_ENTRY *he = history_get(history_base + history_length - 1);

	return he != NULL && he->line != NULL && strcmp(he->line, line) == 0;
}

/* Add a line typed on the terminal to the history (not blanks, not the
 * newest entry again) and rewrite the file at once, so the history survives
 * os.exit() and crashes. */
static void history_add(repl_session *s, const char *line)
{
	char buf[4096];
	const char *path;

	if (!s->tty || is_blank(line) || history_is_last(line))
		return;
	add_history(line);
	path = history_path(buf, sizeof buf);
	if (path != NULL)
		write_history(path);
}

/* ---- the session ------------------------------------------------------- */

/* __close and __gc of a session: free its buffers and give LC_CTYPE back.
 * Safe to call twice. */
static int session_close(lua_State *L)
{
	repl_session *s = luaL_checkudata(L, 1, REPL_SESSION_MT);

	free(s->line);
	s->line = NULL;
	s->len = s->cap = 0;
	if (s->ctype != NULL) {
		setlocale(LC_CTYPE, s->ctype);
		free(s->ctype);
		s->ctype = NULL;
	}
	return 0;
}

/* How many frames are active, the running C function's included. Only a
 * few (at most 10) are dropped from tracebacks: luaL_traceback elides the
 * middle of deep stacks, and its last lines must then be kept. */
static int stack_depth(lua_State *L)
{
	lua_Debug ar;
	int n = 0;

	while (n <= 10 && lua_getstack(L, n, &ar))
		n++;
	return n <= 10 ? n : 0;
}

/* Push a new session as a to-be-closed slot of the running C function. On a
 * terminal, LC_CTYPE follows the environment while the session lasts (libedit
 * needs it to edit UTF-8) and libedit is set up. */
static repl_session *session_open(lua_State *L)
{
	repl_session *s = lua_newuserdatauv(L, sizeof *s, 0);
	const char *ctype;

	memset(s, 0, sizeof *s);
	if (luaL_newmetatable(L, REPL_SESSION_MT)) {
		lua_pushcfunction(L, session_close);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, session_close);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	lua_toclose(L, -1);
	s->drop = stack_depth(L);
	s->tty = isatty(STDIN_FILENO);
	if (s->tty) {
		ctype = setlocale(LC_CTYPE, NULL);
		s->ctype = ctype != NULL ? strdup(ctype) : NULL;
		setlocale(LC_CTYPE, "");
		editor_init();
	}
	return s;
}

/* ---- reading ----------------------------------------------------------- */

/* Read a line with libedit, showing prompt. */
static int read_tty(repl_session *s, const char *prompt)
{
	free(s->line);
	s->line = readline(prompt);
	if (s->line == NULL)
		return REPL_EOF;
	s->len = strlen(s->line);
	return REPL_LINE;
}

/* Read a line from a non-terminal stdin, with no prompt. A final "\r" goes
 * with the "\n", so files with CRLF line ends read the same. */
static int read_pipe(repl_session *s)
{
	ssize_t n = getline(&s->line, &s->cap, stdin);

	if (n < 0) {
		clearerr(stdin);
		return REPL_EOF;
	}
	if (n > 0 && s->line[n - 1] == '\n')
		s->line[--n] = '\0';
	if (n > 0 && s->line[n - 1] == '\r')
		s->line[--n] = '\0';
	s->len = (size_t)n;
	return REPL_LINE;
}

/* Read one line into s->line. Returns REPL_LINE, REPL_EOF, or
 * REPL_INTERRUPTED when a Ctrl-C broke the read. */
static int read_line(repl_session *s, const char *prompt)
{
	struct sigaction old;
	int r;

	sig_seen = 0;
	sigint_push(on_sigint_read, 0, &old);
	r = s->tty ? read_tty(s, prompt) : read_pipe(s);
	sigaction(SIGINT, &old, NULL);
	if (r == REPL_EOF && sig_seen)
		return REPL_INTERRUPTED;
	return r;
}

/* Whether a line asks to leave the REPL: just `exit` or `quit`. */
static int is_quit(const char *line)
{
	size_t start = strspn(line, " \t");
	size_t len = strcspn(line + start, " \t\r\n");

	if (!is_blank(line + start + len))
		return 0;
	return (len == 4 && strncmp(line + start, "exit", 4) == 0) ||
	       (len == 4 && strncmp(line + start, "quit", 4) == 0);
}

/* Whether a compile status and its message on top of the stack mean the
 * chunk is only unfinished (the parser met the end of input). */
static int is_incomplete(lua_State *L, int status)
{
	size_t len, mark = sizeof(REPL_EOF_MARK) - 1;
	const char *msg;

	if (status != LUA_ERRSYNTAX)
		return 0;
	msg = lua_tolstring(L, -1, &len);
	return msg != NULL && len >= mark &&
	       strcmp(msg + len - mark, REPL_EOF_MARK) == 0;
}

/* Compile the code on top of the stack, first as "return <code>" (so an
 * expression gives its values), then as statements. Pushes the function
 * (LUA_OK) or an error message. Returns the status, or REPL_MORE when either
 * form only lacks more lines; its message then is the one to show if the
 * input ends there. */
static int compile_code(lua_State *L)
{
	size_t len;
	const char *code;
	int status, expr_more;

	lua_pushliteral(L, "return ");
	lua_pushvalue(L, -2);
	lua_concat(L, 2);
	code = lua_tolstring(L, -1, &len);
	status = luaL_loadbuffer(L, code, len, REPL_CHUNKNAME);
	lua_remove(L, -2); /* the code with "return" */
	if (status == LUA_OK)
		return LUA_OK;
	expr_more = is_incomplete(L, status);
	code = lua_tolstring(L, -2, &len);
	status = luaL_loadbuffer(L, code, len, REPL_CHUNKNAME);
	if (status != LUA_OK && !is_incomplete(L, status) && expr_more) {
		lua_pop(L, 1); /* keep the expression's "<eof>" message */
		return REPL_MORE;
	}
	lua_remove(L, -2); /* the expression's message */
	return status == LUA_OK || !is_incomplete(L, status) ? status : REPL_MORE;
}

/* Compile the code on top of the stack, reading more lines while it is
 * unfinished (so an expression or a call spread over lines prints its values
 * too). Replaces the code by the function (LUA_OK) or an error message (an
 * error status, also when the input ends inside the chunk); after a Ctrl-C
 * (REPL_INTERRUPTED) the code is popped. */
static int read_code(lua_State *L, repl_session *s)
{
	for (;;) {
		int status = compile_code(L);
		int r;

		if (status != REPL_MORE) {
			lua_remove(L, -2);
			return status;
		}
		r = read_line(s, REPL_PROMPT2);
		if (r == REPL_EOF) {
			lua_remove(L, -2);
			return LUA_ERRSYNTAX;
		}
		lua_pop(L, 1); /* the message */
		if (r == REPL_INTERRUPTED) {
			lua_pop(L, 1);
			return r;
		}
		history_add(s, s->line);
		lua_pushliteral(L, "\n");
		lua_pushlstring(L, s->line, s->len);
		lua_concat(L, 3);
	}
}

/* Read one chunk and push its compiled function (LUA_OK) or a syntax error
 * message; or push nothing and return REPL_EOF, REPL_QUIT or
 * REPL_INTERRUPTED. */
static int read_chunk(lua_State *L, repl_session *s)
{
	int r = read_line(s, REPL_PROMPT1);

	if (r != REPL_LINE)
		return r;
	if (is_quit(s->line))
		return REPL_QUIT;
	history_add(s, s->line);
	lua_pushlstring(L, s->line, s->len);
	return read_code(L, s);
}

/* ---- evaluating -------------------------------------------------------- */

/* Print the arguments through tostring (so __tostring and __name count),
 * separated by tabs, on one line of stdout. Run protected: a __tostring may
 * fail. */
static int print_values(lua_State *L)
{
	int n = lua_gettop(L);
	int i;

	for (i = 1; i <= n; i++) {
		size_t len;
		const char *str = luaL_tolstring(L, i, &len);

		if (i > 1)
			fputc('\t', stdout);
		fwrite(str, 1, len, stdout);
		lua_pop(L, 1);
	}
	fputc('\n', stdout);
	return 0;
}

/* Run the compiled chunk on top of the stack and print what it returns.
 * stdout is flushed after each chunk so a pipe sees the output in order. */
static int run_chunk(lua_State *L, const repl_session *s)
{
	int base = lua_gettop(L);
	int status = docall(L, 0, LUA_MULTRET, s->drop);
	int n = lua_gettop(L) - base + 1;

	if (status == LUA_OK && n > 0) {
		luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
		lua_pushcfunction(L, print_values);
		lua_insert(L, -(n + 1));
		status = docall(L, n, 0, s->drop);
	}
	fflush(stdout);
	return status;
}

/* Read, compile, run and print until end of input or `exit`. On a terminal,
 * a Ctrl-C while typing starts a fresh line, and Ctrl-D ends the prompt's
 * line so the shell's prompt starts on its own. */
static void repl_loop(lua_State *L, repl_session *s)
{
	int status;

	for (;;) {
		status = read_chunk(L, s);
		if (status == REPL_EOF || status == REPL_QUIT)
			break;
		if (status == REPL_INTERRUPTED) {
			if (s->tty)
				fputs("\n", stdout);
			continue;
		}
		if (status == LUA_OK)
			status = run_chunk(L, s);
		l_repl_report(L, NULL, status);
	}
	if (s->tty && status == REPL_EOF)
		fputs("\n", stdout);
	fflush(stdout);
}

/* See l_repl.h. The session is closed when this C function returns or a
 * Lua error unwinds it. */
int l_repl(lua_State *L)
{
	repl_session *s = session_open(L);

	repl_loop(L, s);
	return 0;
}
