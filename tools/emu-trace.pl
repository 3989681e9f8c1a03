#!/usr/bin/perl
# What a run asked of the emulated GPU, summed from the trace that the fake CUDA
# runtime writes under MILES_FAKE_TRACE=file (spec/c/fake_cudart.c): kernel
# launches by name (nm reads them from the binary), library operations
# (cuDNN graphs by their operations and first tensor, cuBLAS products), copies
# and sets by kind with their bytes, host waits.
#   tools/emu-trace.pl build-emu/bin/miles trace.txt [segment]
# segment K (1-based) sums only the lines between the (K-1)-th and the K-th
# "stream sync": every wait for a stream, miles.cuda.synchronize() and the
# reads that wait (:item(), :cpu()) alike. In a loop that synchronises after
# each step and reads nothing in it (tools/emu-step.lua), segment K is
# step K.
use strict;
use warnings;

my ($bin, $file, $segment) = @ARGV;
die "usage: $0 binary trace [segment]\n" unless $bin && $file;
open my $in, '<', $file or die "$0: $file: $!\n";
my (@lines, $seg);
$seg = 1;
while (my $l = <$in>) {
    chomp $l;
    if ($l eq 'stream sync') { $seg++; next; }
    push @lines, $l if !defined $segment || $seg == $segment;
}
close $in;
die "$0: segment $segment is empty\n" if defined $segment && !@lines;

my (%kernels, %threads, %other, %bytes, %names);
for my $l (@lines) {
    my @f = split ' ', $l;
    if ($f[0] eq 'kernel') {           # kernel queued|captured offset blocks threads
        $kernels{$f[2]}++;
        $threads{$f[2]} += $f[3] * $f[4];
    } elsif ($f[0] eq 'copy' || $f[0] eq 'set') {
        my $key = join ' ', @f[0 .. $#f - 1];
        $other{$key}++;
        $bytes{$key} += $f[-1];
    } else {
        my $key = $l =~ s/ \d+(x\d+)*( |$)/ /r;   # a cuDNN graph without its dims
        $other{$key}++;
    }
}
if (%kernels) { # a kernel's address is its symbol's (nm reads PIE offsets as the trace)
    my %want = map { hex($_) => $_ } keys %kernels;
    open my $nm, '-|', 'nm', '-C', '--defined-only', $bin or die "nm: $!\n";
    while (my $l = <$nm>) {
        next unless $l =~ /^([0-9a-f]+) \w (.*)$/ && exists $want{hex $1};
        my ($at, $name) = (hex $1, $2);
        $name =~ s/\(anonymous namespace\):://g;
        $name =~ s/^void //;
        $names{$want{$at}} = $name;
    }
    close $nm;
}
my ($nk, $no) = (0, 0);
printf "%6s %12s  %s\n", 'count', 'threads', 'kernel';
for my $o (sort { $kernels{$b} <=> $kernels{$a} || $a cmp $b } keys %kernels) {
    printf "%6d %12d  %s\n", $kernels{$o}, $threads{$o}, substr($names{$o} // "? at $o", 0, 110);
    $nk += $kernels{$o};
}
printf "%6s %12s  %s\n", 'count', 'bytes', 'other';
for my $k (sort { $other{$b} <=> $other{$a} || $a cmp $b } keys %other) {
    printf "%6d %12s  %s\n", $other{$k}, $bytes{$k} // '', $k;
    $no += $other{$k};
}
printf "%d kernel launches, %d other operations\n", $nk, $no;
