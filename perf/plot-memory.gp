# plot-memory.gp - the memory plot of bench_memory (perf/results/memory.png).
#
#   gnuplot -e "csv='perf/results/memory.csv'; png='perf/results/memory.png'; \
#               warmup=30; ga=0.1; sla=0.01; slb=280; secs=180; \
#               lat='1-20 s, mean 2.6 s'" perf/plot-memory.gp
#
# bench_memory passes the figures it measured; every variable has a
# default so the script also runs by hand on an existing CSV.
if (!exists("csv")) csv = 'perf/results/memory.csv'
if (!exists("png")) png = 'perf/results/memory.png'
if (!exists("warmup")) warmup = 30
if (!exists("lat")) lat = '1-20 s, mean 2.6 s'
if (!exists("secs")) secs = 180
if (!exists("ga")) ga = 0
if (!exists("sla")) sla = 0
if (!exists("slb")) slb = 0

set terminal pngcairo size 1100,800 font 'sans,11' noenhanced
set output png
set datafile separator ','
set key autotitle columnhead
set grid lc rgb '#dddddd'
set xrange [0:secs]
set xlabel 'time (s)'

set multiplot layout 2,1 title sprintf("Resident memory, checkpoint per 1 ms batch, every write %s", lat)

# top: both, same scale
set ylabel 'RSS (MiB)'
set yrange [0:*]
set key top left box opaque
set object 1 rect from 0, graph 0 to warmup, graph 1 fc rgb '#f2f2f2' fs solid noborder behind
set title sprintf("queue per batch (Spark Streaming CheckpointWriter): +%.0f MiB/min, without bound;  shmckpt: flat", slb)
plot csv using 1:3 with lines lw 2 lc rgb '#c0392b' title 'queue per batch (P1 design)', \
     ''  using 1:2 with lines lw 2 lc rgb '#1f6fb2' title 'shmckpt (in-process flusher)'

# bottom: shmckpt alone, zoomed; the parts of its RSS
unset object 1
set object 2 rect from 0, graph 0 to warmup, graph 1 fc rgb '#f2f2f2' fs solid noborder behind
set title sprintf("shmckpt alone: %+.2f MiB after warm-up (%+.3f MiB/min); goal <= 1 MiB; grey = warm-up", ga, sla)
set yrange [0:*]
set offsets 0, 0, graph 0.35, 0
set key at graph 0.98, graph 0.45 right box opaque
plot csv using 1:2 with lines lw 2 lc rgb '#1f6fb2' title 'shmckpt RSS', \
     ''  using 1:5 with lines lw 2 dt 3 lc rgb '#8e44ad' title 'of which shared memory (the ring region: its size is configuration)', \
     ''  using 1:4 with lines lw 2 dt 2 lc rgb '#2e8b57' title 'of which anonymous (heap: snapshot, image, flusher)'
unset multiplot
