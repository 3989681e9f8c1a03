# kernels/*.cu (and common.cuh) for the emulated GPU (make EMU=1). Reads the
# whole file (a launch may span lines) and rewrites:
#  - each launch `kernel<T...><<<grid, block, shared, stream>>>(args)` into
#    `emu::launch(kernel<T...>, grid, block, shared, stream)(args)`;
#  - each `__shared__ T a[N], b[M];` by appending the registration of a and b
#    with the emulated GPU, which fills them with garbage before each block
#    (spec/emu/emu.h): inside a function (an indented line) a call that each
#    thread makes, `emu::shared_guard(a, sizeof a);`, at file scope a static
#    object. A `__shared__` variable template cannot be registered: refused.
# g++ then compiles the result (spec/emu/emu.h is included first).
use strict;
use warnings;

undef $/;
my $src = <STDIN>;
$src =~ s/([A-Za-z_]\w*(?:<[^;{}()]*?>)?)\s*<<<(.*?)>>>/emu::launch($1, $2)/gs;

# The names declared by a declarator list ("a[N], b[M][K]").
sub names {
    my ($decls) = @_;
    my @out;
    my $depth = 0;
    my $cur = '';
    for my $ch (split //, $decls) {
        $depth++ if $ch eq '[' || $ch eq '(';
        $depth-- if $ch eq ']' || $ch eq ')';
        if ($ch eq ',' && $depth == 0) { push @out, $cur; $cur = ''; next; }
        $cur .= $ch;
    }
    push @out, $cur;
    return map { /([A-Za-z_]\w*)\s*(?:\[|$)/ ? $1 : die "cu2cpp: no name in '$_'\n" } @out;
}

$src =~ s{^([ \t]*)(template\s*<[^>]*>\s*)?(__shared__\s+(?:__align__\(\d+\)\s+)?[\w:<>, ]+?\s+)([^;]*);}{
    my ($indent, $tmpl, $head, $decls) = ($1, $2, $3, $4);
    die "cu2cpp: a __shared__ variable template cannot be registered: $head$decls\n" if $tmpl;
    my @n = names($decls);
    my $reg = $indent eq ''
        ? join('', map { " static emu::shared_file emu_shared_$_($_, sizeof $_);" } @n)
        : join('', map { " emu::shared_guard($_, sizeof $_);" } @n);
    "$indent$head$decls;$reg"
}gme;
print $src;
