use strict; use warnings;
use Sisimai;
use JSON::PP;
my $json = JSON::PP->new->canonical(1);
for my $file (@ARGV) {
    my $v = Sisimai->make($file, delivered => 1, vacation => 1);
    my @rows;
    for my $e (@{ $v || [] }) {
        push @rows, { recipient => $e->recipient->address, reason => $e->reason,
                      status => $e->deliverystatus, feedbacktype => $e->feedbacktype // '' };
    }
    (my $name = $file) =~ s{.*/}{};
    print $json->encode({ file => $name, results => \@rows }), "\n";
}
