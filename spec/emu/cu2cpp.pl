# kernels/*.cu for the emulated GPU (make EMU=1): each launch
# `kernel<T...><<<grid, block, shared, stream>>>(args)` becomes
# `emu::launch(kernel<T...>, grid, block, shared, stream)(args)` (spec/emu/emu.h),
# which g++ compiles. Reads the whole file (a launch may span lines).
undef $/;
my $src = <STDIN>;
$src =~ s/([A-Za-z_]\w*(?:<[^;{}()]*?>)?)\s*<<<(.*?)>>>/emu::launch($1, $2)/gs;
print $src;
